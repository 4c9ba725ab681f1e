"""Signals (issue 14): SIGTERM and SIGINT stop `run`, `serve` and `schedule` cleanly: acknowledged
deliveries are stored, exit code 0, one log line saying so, no traceback."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import time

import pytest

from tests.fault_support import (
    Proc,
    free_port,
    get,
    participant_body,
    post_signed,
    process_env,
    start_command,
    stored_hashes,
)


def wait_healthy(proc: Proc, port: int) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and proc.process.poll() is None:
        with contextlib.suppress(OSError, http.client.HTTPException):
            if get(port, "/healthz", timeout=2)[0] == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"not healthy:\n{proc.log()[-3000:]}")


def wait_for_line(proc: Proc, text: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while text not in proc.log():
        assert time.monotonic() < deadline and proc.process.poll() is None, proc.log()[-3000:]
        time.sleep(0.05)


def stop_with(proc: Proc, signum: int) -> int:
    os.kill(proc.pid, signum)
    try:
        code = proc.process.wait(timeout=40)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.process.wait(timeout=10)
        proc._close()
    return code


def assert_clean_stop(proc: Proc, code: int, signum: int, *, ours: bool) -> None:
    log = proc.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log and "Error" not in log.replace("[ERROR] Worker (pid", ""), log[-3000:]
    if ours:
        name = signal.Signals(signum).name
        assert log.count(f"received {name}") == 1, log[-3000:]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_schedule_stops_cleanly(tmp_path, signum):
    proc = start_command("schedule", process_env(tmp_path / "a.db"))
    wait_for_line(proc, "worker started")
    assert_clean_stop(proc, stop_with(proc, signum), signum, ours=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_run_stops_cleanly_with_every_acknowledged_delivery_stored(tmp_path, signum):
    database = tmp_path / "a.db"
    port = free_port()
    proc = start_command("run", process_env(database, PORT=str(port)))
    wait_healthy(proc, port)
    wait_for_line(proc, "worker started")
    acknowledged = []
    for n in range(30):
        body = participant_body(n, run="sig")
        if post_signed(port, body)[0] == 200:
            acknowledged.append(body)
    assert len(acknowledged) == 30
    assert_clean_stop(proc, stop_with(proc, signum), signum, ours=True)
    stored = stored_hashes(database)
    assert {hashlib.sha256(b).hexdigest() for b in acknowledged} <= set(stored)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_stops_cleanly(tmp_path, signum):
    port = free_port()
    proc = start_command("serve", process_env(tmp_path / "a.db", PORT=str(port)))
    wait_healthy(proc, port)
    assert post_signed(port, participant_body(1))[0] == 200
    assert_clean_stop(proc, stop_with(proc, signum), signum, ours=False)
