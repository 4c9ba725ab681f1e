"""Stopping a server started in its own process group (gunicorn and its workers, Prism and node).

The demo, the benchmarks and the tests start such servers with `start_new_session=True`;
this stops every process of the group, politely first.
"""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process_group(process: subprocess.Popen, timeout: float = 25) -> None:
    """SIGTERM the group of `process` (its leader), wait up to `timeout` s, then SIGKILL it."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
