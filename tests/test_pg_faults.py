"""Faults of the webhook path on PostgreSQL (issue 19), with the Procfile's real web process:
two web processes on one database and one killed with SIGKILL under load, and the server
stopped for 10 s under load. Nothing answered 2xx is lost; the chain stays one line."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from integrations.ingest.intake import chain_waiting
from store.audit import verify_file
from store.db import PostgresStore, open_db
from store.evidence import content_hash
from tests.fault_support import bounded, get, participant_body, post_signed, start_web

pytestmark = pytest.mark.slow

THREADS = 3  # posters per web process


class BoundedPosters:
    """Signed posters to one web process: at most `per_thread` deliveries each, or until stopped.

    Each post is recorded with its status (None: no answer) and the monotonic time it ended.
    """

    def __init__(self, port: int, run: str, *, per_thread: int, pause: float = 0.0):
        self.port = port
        self.run = run
        self.per_thread = per_thread
        self.pause = pause
        self.results: list[tuple[float, bytes, int | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(i,), daemon=True) for i in range(THREADS)]

    def _post(self, index: int) -> None:
        for n in range(self.per_thread):
            if self._stop.is_set():
                return
            body = participant_body(index * 10_000 + n, run=self.run)
            try:
                status: int | None = post_signed(self.port, body, timeout=10)[0]
            except (OSError, http.client.HTTPException):
                status = None
            with self._lock:
                self.results.append((time.monotonic(), body, status))
            if self.pause:
                self._stop.wait(self.pause)

    def acked(self) -> list[bytes]:
        with self._lock:
            return [body for _, body, status in self.results if status is not None and 200 <= status < 300]

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> list[int | None]:
        with self._lock:
            return [status for at, _, status in self.results if since <= at <= until]

    def wait_until(self, condition: Callable[[], bool], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.02)
        return False

    def __enter__(self) -> BoundedPosters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def chained_hashes(url: str) -> dict[str, int]:
    """sha256 -> copies in raw_records, after chaining what waits in the intake (as the worker does)."""
    db = open_db(url)
    try:
        assert isinstance(db, PostgresStore)
        chain_waiting(db)
        assert db.execute("SELECT count(*) FROM webhook_intake").fetchone()[0] == 0
        ids = [r[0] for r in db.execute("SELECT id FROM raw_records ORDER BY id")]
        assert ids == list(range(1, len(ids) + 1)), "the chain has a gap"
        copies: dict[str, int] = {}
        for (sha256,) in db.execute("SELECT sha256 FROM raw_records WHERE source = 'webhook'"):
            copies[sha256] = copies.get(sha256, 0) + 1
        return copies
    finally:
        db.close()


def test_two_web_processes_one_killed_under_load_lose_no_acknowledged_delivery(tmp_path, pg_url):
    first = start_web(tmp_path / "unused.db", DATABASE_URL=pg_url)
    second = start_web(tmp_path / "unused.db", DATABASE_URL=pg_url)
    try:
        with bounded(60, "two web processes under load"):
            with (
                BoundedPosters(first.port, "killed", per_thread=80) as doomed,
                BoundedPosters(second.port, "survivor", per_thread=80) as survivor,
            ):
                # Mid-way: requests to the first are in flight when it dies.
                assert doomed.wait_until(lambda: len(doomed.acked()) >= 40, 30), first.log()[-3000:]
                first.kill9()
                assert survivor.wait_until(lambda: len(survivor.results) >= THREADS * 80, 40)
                redelivered = doomed.acked()[:10]
                # Zoom retries what it was answered 2xx for (or not): stored once all the same.
                assert [post_signed(second.port, body)[0] for body in redelivered] == [200] * len(redelivered)
        killed_acked, survivor_acked = doomed.acked(), survivor.acked()
        assert len(survivor_acked) == THREADS * 80, f"a healthy web process refused: {survivor.statuses()[:5]}"
    finally:
        first.kill9()
        second.stop()
    print(f"\n{len(killed_acked)} acknowledged by the killed process, {len(survivor_acked)} by the other")

    copies = chained_hashes(pg_url)
    acked = killed_acked + survivor_acked
    missing = [body for body in acked if content_hash(body) not in copies]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged deliveries are not in raw_records"
    assert all(copies[content_hash(body)] == 1 for body in acked), "a delivery was stored twice"
    assert verify_file(pg_url).count == sum(copies.values()) >= len(acked)


def test_postgres_stopped_for_ten_seconds_gives_503s_then_stores_again_without_restart(tmp_path, pg_server, pg_url):
    web = start_web(tmp_path / "unused.db", DATABASE_URL=pg_url)
    stopped = restarted = 0.0
    try:
        with bounded(90, "an outage of the database under load"):
            with BoundedPosters(web.port, "outage", per_thread=400, pause=0.05) as posters:
                assert posters.wait_until(lambda: len(posters.acked()) >= 20, 20), web.log()[-3000:]
                pg_server.stop("fast")
                stopped = time.monotonic()
                # While it is down, /healthz says so too.
                assert get(web.port, "/healthz", timeout=10)[0] == 503
                time.sleep(10 - (time.monotonic() - stopped))
                down_until = time.monotonic()
                pg_server.start()
                restarted = time.monotonic()
                # The same processes store again once the server is back: no restart.
                before = len(posters.acked())
                assert posters.wait_until(lambda: len(posters.acked()) >= before + 20, 30), web.log()[-3000:]
            during = posters.statuses(since=stopped + 2.5, until=down_until)
            after = posters.statuses(since=restarted)
        assert during and set(during) == {503}, f"while the server was down: {sorted(set(during), key=str)}"
        assert 200 in after
        assert get(web.port, "/healthz")[0] == 200
        acked = posters.acked()
        back = min(at for at, _, status in posters.results if at >= restarted and status == 200) - restarted
    finally:
        web.stop()
    print(f"\n{len(during)} answered 503 while PostgreSQL was down; stored again {back:.1f}s after its restart")

    copies = chained_hashes(pg_url)
    missing = [body for body in acked if content_hash(body) not in copies]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged deliveries are not in raw_records"
    assert all(copies[content_hash(body)] == 1 for body in acked)
    assert verify_file(pg_url).count == sum(copies.values())


def _server_processes(pg_server) -> list[int]:
    """The postmaster of `pg_server` and its children (backends, writer, checkpointer...)."""
    with open(os.path.join(pg_server.data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


def test_a_server_that_stops_answering_gives_503s_within_zooms_bound(tmp_path, pg_server, pg_url):
    # A frozen host or a network that drops packets: no error ever comes back, the request
    # must still be answered (503, Zoom retries) before Zoom's 3 s.
    web = start_web(tmp_path / "unused.db", DATABASE_URL=pg_url, DB_LOCK_TIMEOUT_SECONDS="1")
    assert post_signed(web.port, participant_body(1, run="frozen"))[0] == 200
    frozen = _server_processes(pg_server)  # with the backends the web process opened
    try:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):  # a short-lived child may be gone
                os.kill(pid, signal.SIGSTOP)
        answers = []
        for n in range(2, 5):
            started = time.monotonic()
            status = post_signed(web.port, participant_body(n, run="frozen"), timeout=10)[0]
            answers.append((status, time.monotonic() - started))
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    try:
        assert [status for status, _ in answers] == [503] * 3
        assert max(took for _, took in answers) < 3, answers
        # Thawed: the same process stores again.
        with bounded(30, "storing again after the thaw"):
            deadline = time.monotonic() + 20
            while post_signed(web.port, participant_body(9, run="frozen"))[0] != 200:
                assert time.monotonic() < deadline, web.log()[-3000:]
                time.sleep(0.2)
    finally:
        web.stop()
    copies = chained_hashes(pg_url)
    assert copies[content_hash(participant_body(1, run="frozen"))] == 1
    assert copies[content_hash(participant_body(9, run="frozen"))] == 1
