"""Graceful stop (issue 7): SIGTERM to the web process answers the requests in flight; SIGTERM
to the worker lets its running job finish (or stop at a checkpoint) before it exits."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from store.db import write_lock
from store.evidence import content_hash
from tests.fault_support import (
    connect,
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
    total = 20_000  # a few seconds of normalization on this machine
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
