"""Group commit (issue 6): a process's concurrent webhook threads share one spool write and
one fsync, and each still gets its answer only once its delivery is durable."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from integrations.ingest.group_commit import BoundedCommit, GroupCommit
from integrations.ingest.spool import decode
from integrations.ingest.webhook_path import ingest
from integrations.web import MAX_BODY_BYTES
from store.db import DatabaseUnavailable, durable_write, open_db
from store.evidence import Delivery, append_deliveries, content_hash, store_delivery
from tests.conftest import signed_headers
from tests.fault_support import participant_body, stored_hashes, verify_chain


def delivery(n: int, run: str = "gc") -> Delivery:
    return Delivery(participant_body(n, run=run), "1764237600", "v0=test", request_id=f"req-{n}")


def store_concurrently(group: GroupCommit, deliveries: list[Delivery]) -> list:
    """Store each delivery from its own thread; the result or the exception, in order."""
    results: list = [None] * len(deliveries)

    def one(i: int) -> None:
        try:
            results[i] = group.store(deliveries[i])
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(deliveries))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a storing thread never returned"
    return results


@pytest.fixture
def database(db, config) -> Path:
    return Path(config.database_path)


class RecordingCommit:
    """A commit function that records its batches; the first call can be held open."""

    def __init__(self, *, hold_first: float = 0.0, fail_first: BaseException | None = None):
        self.batches: list[list[bytes]] = []
        self.hold_first = hold_first
        self.fail_first = fail_first
        self._lock = threading.Lock()

    def __call__(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            first = not self.batches
            self.batches.append([d.body for d in deliveries])
        if first and self.hold_first:
            time.sleep(self.hold_first)  # a slow sync: everyone else queues meanwhile
        if first and self.fail_first is not None:
            raise self.fail_first


def test_threads_arriving_during_a_sync_share_the_next_one():
    commit = RecordingCommit(hold_first=0.5)
    group = GroupCommit(commit, timeout=5)
    deliveries = [delivery(n) for n in range(40)]
    results = store_concurrently(group, deliveries)
    assert results == [None] * 40
    # The first thread leads alone; the 39 that queued behind its slow sync share one or two.
    assert len(commit.batches) <= 3 and group.batches == len(commit.batches), commit.batches
    assert sorted(b for batch in commit.batches for b in batch) == sorted(d.body for d in deliveries)
    assert group.stored == 40


def test_a_failing_commit_fails_only_its_own_batch_with_a_503():
    commit = RecordingCommit(fail_first=OSError(28, "No space left on device"))
    group = GroupCommit(commit, timeout=2)
    with pytest.raises(DatabaseUnavailable, match="No space left"):
        group.store(delivery(1, run="flaky"))
    group.store(delivery(2, run="flaky"))
    assert [len(b) for b in commit.batches] == [1, 1] and group.stored == 1


def test_waiters_queued_behind_a_stalled_sync_get_503_at_their_bound():
    commit = RecordingCommit(hold_first=2.5)
    group = GroupCommit(commit, timeout=1.0)
    started = time.monotonic()
    finished: list[float] = []

    def one(n: int):
        try:
            group.store(delivery(n, run="stall"))
            return "stored"
        except DatabaseUnavailable:
            return "503"
        finally:
            finished.append(time.monotonic() - started)

    first = threading.Thread(target=lambda: one(0))
    first.start()
    time.sleep(0.1)  # the first is now in its (stalled) sync
    results = store_concurrently_fn(one, range(1, 9))
    first.join(timeout=10)
    assert results == ["503"] * 8
    # Each left at its own 1 s bound, well before Zoom's 3 s, not after the stalled sync.
    assert max(sorted(finished)[:8]) < 1.6, finished
    assert [len(b) for b in commit.batches] == [1]  # nobody was written after giving up
    group.store(delivery(99, run="stall"))  # nothing is left stuck
    assert group.stored == 2


def store_concurrently_fn(fn, items) -> list:
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(fn, items))


def test_duplicates_in_one_batch_are_stored_once(database):
    conn = open_db(str(database))
    first, again = delivery(1), delivery(1)
    with durable_write(conn) as c:
        records = append_deliveries(c, [first, delivery(2), again])
    assert [r.created for r in records] == [True, True, False]
    assert records[0].id == records[2].id != records[1].id
    assert store_delivery(conn, first.body, timestamp="1", signature="x").created is False
    assert verify_chain(database) == 2


def test_the_app_spools_through_its_group_commit_then_imports(client, config, database):
    body = participant_body(7, run="app")
    response = client.post("/webhooks/zoom", data=body, headers=signed_headers(body))
    assert response.status_code == 200 and response.json == {"status": "stored"}
    assert ingest(config).group.stored == 1
    spooled, _ = decode(Path(ingest(config).writer.path).read_bytes())
    assert [d.body for d in spooled] == [body]
    with sqlite3.connect(database) as conn:  # imported right after the answer (delay 0 here)
        assert conn.execute("SELECT body FROM raw_records").fetchall() == [(body,)]


def wsgi_post(app, body: bytes, *, length: bool, terminated: bool) -> tuple[str, dict]:
    """POST /webhooks/zoom straight through WSGI, with or without a Content-Length."""
    headers = signed_headers(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/zoom",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": terminated,
        "wsgi.errors": io.StringIO(),
        "HTTP_X_ZM_REQUEST_TIMESTAMP": headers["x-zm-request-timestamp"],
        "HTTP_X_ZM_SIGNATURE": headers["x-zm-signature"],
    }
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    status: list[str] = []
    answer = b"".join(app.wsgi_app(environ, lambda s, h, exc=None: status.append(s)))
    return status[0], json.loads(answer)


def test_chunked_delivery_without_content_length_is_stored(app, database):
    body = participant_body(1, run="chunked")
    assert wsgi_post(app, body, length=False, terminated=True) == ("200 OK", {"status": "stored"})
    assert content_hash(body) in stored_hashes(database)


def test_chunked_delivery_over_the_limit_is_413(app, database):
    body = b'{"event":"x","pad":"' + b"a" * MAX_BODY_BYTES + b'"}'
    status, answer = wsgi_post(app, body, length=False, terminated=True)
    assert status.startswith("413") and answer["message"]
    assert stored_hashes(database) == {}


def test_body_without_length_on_an_unterminated_stream_is_not_read(app, database):
    # werkzeug's rule: such a stream may never end, so the body is empty (and unsigned).
    status, answer = wsgi_post(app, participant_body(2, run="open"), length=False, terminated=False)
    assert status.startswith("401") and answer["error"] == "invalid_signature"
    assert stored_hashes(database) == {}


def test_a_commit_that_never_returns_is_a_503_within_the_bound_and_the_next_one_stores():
    release = threading.Event()
    committed: list[list] = []

    def commit(deliveries):
        if not committed:  # the first call hangs, as a frozen server does
            release.wait(30)
        committed.append(deliveries)

    group = GroupCommit(BoundedCommit(commit, timeout=1.0), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="did not answer within 1s"):
        group.store(Delivery(b"first", None, None))
    assert time.monotonic() - started < 5
    release.set()  # the server answers again: the late commit lands, the next call stores
    group.store(Delivery(b"second", None, None))
    assert [[d.body for d in batch] for batch in committed] == [[b"first"], [b"second"]]
