"""Prometheus multiprocess mode: counters shared by every gunicorn worker and the scheduler.

Each process writes its values to `<metrics dir>/<kind>_<pid>.db` (prometheus-client's
mmap files); /metrics sums them. The directory is the database's neighbour by default
(`<database>-metrics/`, like the spool), owner-only, so the web processes and the worker of
one database share it. Files of processes that no longer run are removed when the web
process starts (their counts restart from zero, which Prometheus's rate() takes as a reset).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re

from prometheus_client import values
from prometheus_client.multiprocess import mark_process_dead

from integrations.ops.metrics import prime

log = logging.getLogger(__name__)

_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")


def is_multiprocess() -> bool:
    """True when this process's metric values live in the multiprocess directory."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def enable_multiprocess(directory: str) -> None:
    """Keep this process's metric values in `directory`; call before the first metric is used."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    # prometheus-client reads the variable when it opens a process's file, and decides the
    # mode when it is first imported: a process started without it switches here.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    if not is_multiprocess():
        values.ValueClass = values.MultiProcessValue()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_files(directory: str) -> int:
    """Delete the files of processes that are gone; returns how many."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    removed = 0
    for name in os.listdir(directory):
        match = _FILE.match(name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, name))
                removed += 1
    return removed


def preallocate(directory: str) -> None:
    """Allocate the disk blocks of this process's metric files now.

    prometheus-client maps its files sparse: a first write to a page on a full disk would
    kill the process with SIGBUS. Allocated while there is room, they never need more
    (they grow only past 1 MiB, far beyond this service's label sets).
    """
    suffix = f"_{os.getpid()}.db"
    for name in os.listdir(directory):
        if name.endswith(suffix):
            fd = os.open(os.path.join(directory, name), os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
            except OSError as e:
                log.warning("metric file %s not preallocated: %s", name, e)
            finally:
                os.close(fd)


def prepare_process(directory: str) -> None:
    """Multiprocess mode for this process, its metric files made and allocated now."""
    enable_multiprocess(directory)
    prime()
    preallocate(directory)


def process_exited(pid: int, directory: str) -> None:
    """gunicorn's child_exit: drop the live gauges of a worker that exited."""
    # The master never switched to multiprocess mode: it has no PROMETHEUS_MULTIPROC_DIR.
    mark_process_dead(pid, directory)
