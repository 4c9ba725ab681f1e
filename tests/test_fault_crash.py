"""Crash faults (issue 7; also issue 2's Procfile kill -9 test): kill -9 of the real web
process under load loses nothing it acknowledged, and it keeps accepting after a restart."""

from __future__ import annotations

import http.client
import math
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from store.db import open_db
from store.evidence import content_hash
from store.reports import report_rows
from tests.fault_support import (
    ended_webinar,
    fetch_progress,
    insert_deliveries,
    participant_body,
    post_signed,
    process_env,
    procfile_line,
    start_procfile,
    start_web,
    stored_hashes,
    verify_chain,
)
from tests.zoom_support import expected_rows

pytestmark = pytest.mark.slow

POSTERS = 4
ROUNDS = 3


class Posters:
    """Concurrent signed posters; each remembers which bodies got a 2xx."""

    def __init__(self, port: int, run: str):
        self.port = port
        self.run = run
        self.acked: list[bytes] = []
        self.refused: list[tuple[int, bytes]] = []
        self.transport_errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(i,), daemon=True) for i in range(POSTERS)]

    def _post(self, index: int) -> None:
        n = 0
        while not self._stop.is_set() and n < 100_000:
            body = participant_body(index * 100_000 + n, run=self.run)
            n += 1
            try:
                status, answer = post_signed(self.port, body, timeout=10)
            except (OSError, http.client.HTTPException):
                with self._lock:
                    self.transport_errors += 1
                time.sleep(0.01)
                continue
            with self._lock:
                if 200 <= status < 300:
                    self.acked.append(body)
                else:
                    self.refused.append((status, answer))

    def __enter__(self) -> Posters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def test_kill9_of_procfile_web_under_load_loses_no_acknowledged_event(tmp_path):
    database = tmp_path / "attendance.db"
    acked: list[bytes] = []
    rng = random.Random()
    for round_no in range(ROUNDS):
        web = start_web(database)
        try:
            with Posters(web.port, run=f"crash{round_no}") as posters:
                # A random moment under load: several requests are mid-write when it lands.
                time.sleep(rng.uniform(0.5, 1.5))
                web.kill9()
            assert posters.refused == [], f"a healthy server refused events: {posters.refused[:3]}"
            assert len(posters.acked) >= 10, (
                f"round {round_no}: too little load to mean anything ({len(posters.acked)} acked)\n{web.log()[-2000:]}"
            )
            acked.extend(posters.acked)
            print(f"round {round_no}: {len(posters.acked)} acknowledged, {posters.transport_errors} cut off by kill -9")
        finally:
            web.kill9()

    stored = stored_hashes(database)
    missing = [body for body in acked if content_hash(body) not in stored]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged events are not in the database"
    assert all(stored[content_hash(body)] == body for body in acked), "a stored body differs from the bytes posted"
    assert verify_chain(database) == len(stored) >= len(acked)

    # After the crashes the restarted process recovers the WAL and keeps accepting.
    web = start_web(database)
    try:
        after = [participant_body(n, run="after") for n in range(5)]
        assert [post_signed(web.port, body)[0] for body in after] == [200] * 5
        assert post_signed(web.port, acked[0])[0] == 200  # Zoom's retry of a stored event
    finally:
        web.stop()
    stored = stored_hashes(database)
    assert all(content_hash(body) in stored for body in after)
    assert verify_chain(database) == len(stored)  # the retry was not stored twice


def test_kill9_of_the_worker_mid_report_fetch_resumes_without_duplicates(tmp_path):
    database = tmp_path / "attendance.db"
    webinar_id, uuid = "96789012345", "cRaSh+wOrKeR/1=="
    end = datetime.now(UTC) - timedelta(hours=1)  # its first report fetch is due at once
    dataset = synthetic_webinar(2500, webinar_id=webinar_id, uuid=uuid, start=end - timedelta(minutes=90))
    pages = math.ceil(len(dataset.participants[uuid]) / 300)
    insert_deliveries(database, [ended_webinar(end, webinar_id, uuid)])
    normalize_pending(open_db(str(database)))  # the webinar is tracked, its end known
    rng = random.Random()
    with ZoomSimulator(dataset) as sim:
        sim.add_fault("participants", "slow", times=10_000, delay=0.25)  # pages come slowly
        env = process_env(database, ZOOM_REQUESTS_PER_SECOND="0", **sim.environ())
        kills = []
        for _ in range(2):
            previous_fetch = fetch_progress(database)[0]
            worker = start_procfile(procfile_line("worker"), env)
            kill_after = rng.randint(1, pages - 3)  # a random page, mid-report
            try:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    fetch_id, stored_pages, _ = fetch_progress(database)
                    if fetch_id > previous_fetch and stored_pages >= kill_after:
                        break
                    assert worker.process.poll() is None, worker.log()[-3000:]
                    time.sleep(0.01)
                time.sleep(rng.uniform(0, 0.25))  # anywhere within a page
                worker.kill9()
                progress = fetch_progress(database)
            finally:
                worker.kill9()
            assert progress[0] > previous_fetch and progress[2] == 0, f"no fetch was cut short: {progress}"
            kills.append(progress[1])
        sim.faults.clear()
        worker = start_procfile(procfile_line("worker"), env)  # restarted for good
        try:
            deadline = time.monotonic() + 60
            while fetch_progress(database)[2] == 0 and time.monotonic() < deadline:
                assert worker.process.poll() is None, worker.log()[-3000:]
                time.sleep(0.05)
        finally:
            assert worker.stop() == 0
    print(f"\nworker killed after page {kills[0]} and page {kills[1]} of {pages}; the restart completed the report")

    db = open_db(str(database))
    fetches = [dict(r) for r in db.query("SELECT id, status, pages, rows FROM report_fetches ORDER BY id")]
    [complete] = [f for f in fetches if f["status"] == "complete"]
    assert complete["pages"] == pages and complete["rows"] == len(dataset.participants[uuid])
    instance = db.execute(
        "SELECT report_complete, report_fetch_id FROM instances WHERE instance_uuid = ?", [uuid]
    ).fetchone()
    assert instance == (1, complete["id"])
    # No duplicates: each report row once, each page once in the evidence (re-fetched pages dedupe).
    assert db.execute("SELECT count(*) FROM report_rows WHERE instance_uuid = ?", [uuid]).fetchone()[0] == len(
        dataset.participants[uuid]
    )
    report_pages = db.execute(
        "SELECT count(*), count(DISTINCT sha256) FROM raw_records WHERE source = 'report' AND url LIKE '%participants%'"
    ).fetchone()
    assert report_pages[0] == report_pages[1] == pages
    assert sorted(tuple(sorted(r.items())) for r in report_rows(db, uuid)) == expected_rows(dataset, uuid)
    verify_chain(database)
