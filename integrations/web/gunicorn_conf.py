"""gunicorn settings the command line cannot give: Prometheus multiprocess mode (issue 18).

Loaded with `--config python:integrations.web.gunicorn_conf` (Procfile, `serve`, `run`).
Each worker switches to multiprocess mode right after the fork, before it loads the app, so
its counters go to the shared directory that GET /metrics sums.
"""

from __future__ import annotations

from integrations.config import ConfigError, load_config
from integrations.ops.multiprocess import prepare_process, process_exited, remove_dead_files

try:
    _metrics_dir: str | None = load_config().metrics_dir
except ConfigError:
    _metrics_dir = None  # create_app reports the bad configuration in each worker


def on_starting(server) -> None:  # noqa: ARG001 (gunicorn's hook signature)
    """Start from a directory holding no dead process's files."""
    if _metrics_dir:
        remove_dead_files(_metrics_dir)


def post_fork(server, worker) -> None:  # noqa: ARG001 (gunicorn's hook signature)
    """This worker's metric values go to the shared directory, its files made before any request."""
    if _metrics_dir:
        prepare_process(_metrics_dir)


def child_exit(server, worker) -> None:  # noqa: ARG001 (gunicorn's hook signature)
    """A worker is gone: its live gauges must not be summed any more."""
    if _metrics_dir:
        process_exited(worker.pid, _metrics_dir)
