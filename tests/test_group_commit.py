"""Group commit (issue 6): a process's concurrent webhook threads share one transaction and
one fsync, and each still gets its own answer only once its row is durable."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from integrations.web.ingest import group_commit
from store.db import DatabaseUnavailable, durable_write, open_db, thread_db, write_lock
from store.evidence import Delivery, append_deliveries, content_hash, store_delivery
from store.group_commit import GroupCommit
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


def new_group(database: Path, timeout: float = 2.0) -> GroupCommit:
    return GroupCommit(lambda: thread_db(str(database), lock_timeout=timeout), timeout=timeout)


def test_threads_waiting_for_the_lock_share_one_commit(database):
    group = new_group(database)
    deliveries = [delivery(n) for n in range(40)]
    results: list = []
    storing = threading.Thread(target=lambda: results.extend(store_concurrently(group, deliveries)))
    with write_lock(str(database)).hold(timeout=5):
        # The first thread leads and waits for the lock; the others queue behind it.
        storing.start()
        time.sleep(0.5)
    storing.join(timeout=30)
    assert all(not isinstance(r, Exception) for r in results), results
    assert group.stored == 40 and group.batches <= 3, (group.stored, group.batches)
    stored = stored_hashes(database)
    assert [stored[content_hash(d.body)] for d in deliveries] == [d.body for d in deliveries]
    # Each thread got its own row's id back, and the rows form one intact chain.
    conn = sqlite3.connect(database)
    ids = dict(conn.execute("SELECT sha256, id FROM raw_records"))
    assert [r.id for r in results] == [ids[content_hash(d.body)] for d in deliveries]
    assert all(r.created for r in results)
    assert verify_chain(database) == 40


def test_duplicates_in_one_batch_are_stored_once(database):
    conn = open_db(str(database))
    first, again = delivery(1), delivery(1)
    with durable_write(conn) as c:
        records = append_deliveries(c, [first, delivery(2), again])
    assert [r.created for r in records] == [True, True, False]
    assert records[0].id == records[2].id != records[1].id
    assert store_delivery(conn, first.body, timestamp="1", signature="x").created is False
    assert verify_chain(database) == 2


def test_lock_held_past_the_bound_gives_every_waiter_503_within_the_bound(database):
    group = new_group(database, timeout=1.0)
    deliveries = [delivery(n, run="held") for n in range(12)]
    started = time.monotonic()
    with write_lock(str(database)).hold(timeout=10):
        results = store_concurrently(group, deliveries)
        elapsed = time.monotonic() - started
    assert all(isinstance(r, DatabaseUnavailable) for r in results), results
    # One bound for each delivery however many batches are ahead of it, not one per batch.
    assert elapsed < 1.6, elapsed  # a second batch's own full bound would make it 2 s
    assert stored_hashes(database) == {}
    # Nothing is left stuck: the next deliveries are stored at once.
    assert all(r.created for r in store_concurrently(group, deliveries[:3]))


def test_a_failing_batch_fails_only_its_own_waiters(database):
    calls = {"n": 0}

    def flaky_connect():
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return thread_db(str(database), lock_timeout=2)

    group = GroupCommit(flaky_connect, timeout=2)
    with pytest.raises(sqlite3.OperationalError):
        group.store(delivery(1, run="flaky"))
    assert group.store(delivery(2, run="flaky")).created
    assert len(stored_hashes(database)) == 1


def test_the_app_stores_through_its_group_commit(client, config, database):
    body = participant_body(7, run="app")
    response = client.post("/webhooks/zoom", data=body, headers=signed_headers(body))
    assert response.status_code == 200 and response.json == {"status": "stored"}
    assert group_commit(config).stored == 1
    assert stored_hashes(database)[content_hash(body)] == body


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
    from integrations.web import MAX_BODY_BYTES

    body = b'{"event":"x","pad":"' + b"a" * MAX_BODY_BYTES + b'"}'
    status, answer = wsgi_post(app, body, length=False, terminated=True)
    assert status.startswith("413") and answer["message"]
    assert stored_hashes(database) == {}


def test_body_without_length_on_an_unterminated_stream_is_not_read(app, database):
    # werkzeug's rule: such a stream may never end, so the body is empty (and unsigned).
    status, answer = wsgi_post(app, participant_body(2, run="open"), length=False, terminated=False)
    assert status.startswith("401") and answer["error"] == "invalid_signature"
    assert stored_hashes(database) == {}


def test_checkpoints_run_outside_the_lock_every_so_many_deliveries(database, tmp_path):
    group = new_group(database)
    group.CHECKPOINT_EVERY = 50
    for start in range(0, 200, 20):
        store_concurrently(group, [delivery(n, run="ckpt") for n in range(start, start + 20)])
    # The database file alone, without its WAL, already holds most rows: they were copied back.
    copy = tmp_path / "main-file-only.db"
    copy.write_bytes(database.read_bytes())
    in_main_file = sqlite3.connect(copy).execute("SELECT count(*) FROM raw_records").fetchone()[0]
    assert 150 <= in_main_file <= 200
