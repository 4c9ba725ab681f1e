"""Graceful stop (issue 7): SIGTERM to the web process answers the requests in flight; SIGTERM
to the worker lets its running job finish (or stop at a checkpoint) before it exits."""

from __future__ import annotations

import math
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from store.db import open_db, write_lock
from store.evidence import content_hash
from store.reports import report_rows
from tests.fault_support import (
    connect,
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


def test_sigterm_to_web_answers_the_request_in_flight(tmp_path):
    database = tmp_path / "attendance.db"
    web = start_web(database)
    answers: list = []
    slow = participant_body(1, run="inflight")
    try:
        # A slow request: it waits for the write lock, which this test holds for a while.
        with write_lock(str(database)).hold(timeout=5):
            poster = threading.Thread(target=lambda: answers.append(post_signed(web.port, slow, timeout=30)))
            poster.start()
            time.sleep(0.5)  # the request is in a worker, waiting
            web.process.send_signal(signal.SIGTERM)
            time.sleep(0.8)  # gunicorn has stopped listening and told its workers to finish
        poster.join(timeout=30)
        status = web.process.wait(timeout=30)
    finally:
        web.stop()
    assert answers == [(200, b'{"status":"stored"}')], answers
    assert status == 0, web.log()[-2000:]
    assert content_hash(slow) in stored_hashes(database)
    assert verify_chain(database) == 1


def normalize_cursor(database) -> int:
    conn = connect(database)
    try:
        row = conn.execute("SELECT value FROM state WHERE key = 'normalize_cursor'").fetchone()
        return int(row[0]) if row else 0
    finally:
        conn.close()


def test_sigterm_to_worker_lets_the_running_job_finish(tmp_path):
    database = tmp_path / "attendance.db"
    total = 10_000  # 20 batches: seconds of normalization on this machine
    insert_deliveries(database, [participant_body(n, run="sigterm") for n in range(total)])
    worker = start_procfile(procfile_line("worker"), process_env(database))
    try:
        deadline = time.monotonic() + 60
        while normalize_cursor(database) == 0 and time.monotonic() < deadline and worker.process.poll() is None:
            time.sleep(0.02)
        at_signal = normalize_cursor(database)
        worker.process.send_signal(signal.SIGTERM)
        status = worker.process.wait(timeout=60)
    finally:
        worker.stop()
    log = worker.log()
    assert 0 < at_signal < total, f"the signal did not land while the job ran (cursor {at_signal})\n{log[-2000:]}"
    assert status == 0, log[-2000:]
    assert "finishing the running job" in log
    conn = connect(database)
    try:
        cursor = normalize_cursor(database)
        normalized = conn.execute("SELECT count(*) FROM participant_events").fetchone()[0]
        beyond = conn.execute("SELECT count(*) FROM participant_events WHERE raw_id > ?", [cursor]).fetchone()[0]
    finally:
        conn.close()
    # Finished, or stopped at a checkpoint: whole batches only, the cursor where they end.
    assert cursor > at_signal
    assert normalized == cursor and beyond == 0
    print(f"\nSIGTERM at cursor {at_signal} of {total}; worker exited 0 with cursor {cursor}")


def test_sigterm_to_worker_mid_report_fetch_stops_within_a_page_and_the_fetch_stays_due(tmp_path):
    database = tmp_path / "attendance.db"
    webinar_id, uuid = "98901234567", "sIgTeRm+rEpOrT/1=="
    end = datetime.now(UTC) - timedelta(hours=1)  # its first report fetch is due at once
    dataset = synthetic_webinar(2500, webinar_id=webinar_id, uuid=uuid, start=end - timedelta(minutes=90))
    pages = math.ceil(len(dataset.participants[uuid]) / 300)
    insert_deliveries(database, [ended_webinar(end, webinar_id, uuid)])
    normalize_pending(open_db(str(database)))
    with ZoomSimulator(dataset) as sim:
        sim.add_fault("participants", "slow", times=10_000, delay=0.3)  # a report that takes seconds
        env = process_env(database, ZOOM_REQUESTS_PER_SECOND="0", **sim.environ())
        worker = start_procfile(procfile_line("worker"), env)
        try:
            deadline = time.monotonic() + 60
            while fetch_progress(database)[1] < 2 and time.monotonic() < deadline:
                assert worker.process.poll() is None, worker.log()[-3000:]
                time.sleep(0.01)
            signalled = time.monotonic()
            worker.process.send_signal(signal.SIGTERM)
            status = worker.process.wait(timeout=30)
            took = time.monotonic() - signalled
        finally:
            worker.stop()
        _, pages_at_stop, complete = fetch_progress(database)
        assert status == 0, worker.log()[-2000:]
        assert complete == 0 and pages_at_stop < pages, "the report completed: SIGTERM proved nothing"
        # Within a page or so, far below a platform's grace period (Heroku: 30 s).
        assert took < 5, f"the worker took {took:.1f}s to stop"
        schedule = (
            connect(database)
            .execute("SELECT status, claimed_by FROM report_schedule WHERE instance_uuid = ?", [uuid])
            .fetchone()
        )
        assert tuple(schedule) == ("pending", None), tuple(schedule)

        sim.faults.clear()
        worker = start_procfile(procfile_line("worker"), env)
        try:
            deadline = time.monotonic() + 60
            while fetch_progress(database)[2] == 0 and time.monotonic() < deadline:
                assert worker.process.poll() is None, worker.log()[-3000:]
                time.sleep(0.05)
        finally:
            assert worker.stop() == 0
    db = open_db(str(database))
    assert sorted(tuple(sorted(r.items())) for r in report_rows(db, uuid)) == expected_rows(dataset, uuid)
    print(
        f"\nworker stopped {took:.2f}s after SIGTERM at page {pages_at_stop} of {pages}; the next start completed the report"
    )
