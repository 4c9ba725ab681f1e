"""export-raw over a database file on several cores: slices of the log formatted by worker
processes, written in record order.

Memory and spool space stay flat whatever the size of the log, and every slice agrees
with one snapshot (docs/internals.md says how)."""

from __future__ import annotations

import collections
import errno
import itertools
import multiprocessing
import os
import tempfile
from collections.abc import Generator
from typing import Any

from integrations.audit.export import csv_header, export_chunks
from store.audit import open_readonly
from store.rawlog import record_ids

SLICE_RECORDS = 5000

_worker_dbs: dict[str, Any] = {}


def default_workers() -> int:
    """Worker processes by default: the cores this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def slices(conn, **filters: Any) -> Generator[tuple[int, int], None, None]:
    """(first id, last id) of consecutive slices of the records `filters` select, SLICE_RECORDS ids at most."""
    if not any(value is not None for value in filters.values()):
        # The whole log: cut the id range, no need to read it first.
        low, high = conn.execute("SELECT min(id), max(id) FROM raw_records").fetchone()
        if low is not None:
            for first in range(low, high + 1, SLICE_RECORDS):
                yield first, min(first + SLICE_RECORDS - 1, high)
        return
    batch: list[int] = []
    for record_id in record_ids(conn, **filters):
        batch.append(record_id)
        if len(batch) == SLICE_RECORDS:
            yield batch[0], batch[-1]
            batch = []
    if batch:
        yield batch[0], batch[-1]


def _context() -> multiprocessing.context.BaseContext:
    """forkserver where there is one, as `store.audit.verify_file` uses.

    Not fork: a caller with threads (a database pool, the group commit) can fork a child
    that holds a lock one of those threads had, and the pool then waits on it forever.
    """
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _format_slice(
    path: str, fmt: str, filters: dict[str, Any], first_id: int, last_id: int, spool: str
) -> tuple[str, int]:
    """Format one slice into a file under `spool` (in a worker process); returns its path and size."""
    db = _worker_dbs.get(path)
    if db is None:
        db = _worker_dbs[path] = open_readonly(path)
    fd, name = tempfile.mkstemp(dir=spool)
    size = 0
    with os.fdopen(fd, "wb") as f:
        for chunk in export_chunks(db.conn, fmt, first_id=first_id, last_id=last_id, header=False, **filters):
            f.write(chunk)
            size += len(chunk)
    return name, size


def _write_all(out_fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out_fd, view) :]


def _append_file(out_fd: int, name: str, size: int) -> None:
    """Copy a spooled slice to `out_fd` inside the kernel (no copy through this process), then delete it."""
    fd = os.open(name, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            try:
                sent = os.sendfile(out_fd, fd, offset, size - offset)
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOSYS) or offset:
                    raise
                # Some outputs (a terminal) take no sendfile: copy through this process.
                with os.fdopen(os.dup(fd), "rb") as f:
                    while block := f.read(1 << 20):
                        _write_all(out_fd, block)
                return
            if sent == 0:
                raise OSError(f"spooled slice {name} ended early")
            offset += sent
    finally:
        os.close(fd)
        os.unlink(name)


def export_to_fd(path: str, fmt: str, out_fd: int, *, workers: int | None = None, **filters: Any) -> int:
    """Write the raw join log of the database at `path` to `out_fd`, formatted by `workers` processes; returns bytes written.

    Workers spool their slices to files in a private temporary directory; this process
    copies them to `out_fd` in order with sendfile, so the output never passes through
    Python and memory stays flat.
    """
    workers = default_workers() if workers is None else workers
    db = open_readonly(path)
    ranges = slices(db.conn, **filters)
    written = 0
    try:
        first, second = (next(ranges, None), next(ranges, None)) if workers > 1 else (None, None)
        if first is None or second is None:
            # Small, or one process asked for: no workers to start.
            ranges.close()
            for chunk in export_chunks(db.conn, fmt, **filters):
                _write_all(out_fd, chunk)
                written += len(chunk)
            return written
        if fmt == "csv":
            header = csv_header()
            _write_all(out_fd, header)
            written += len(header)
        with tempfile.TemporaryDirectory(prefix="export-raw-") as spool, _context().Pool(workers) as pool:
            pending: collections.deque = collections.deque()

            def take_one() -> int:
                name, size = pending.popleft().get()
                _append_file(out_fd, name, size)
                return size

            for first_id, last_id in itertools.chain((first, second), ranges):
                pending.append(pool.apply_async(_format_slice, (path, fmt, filters, first_id, last_id, spool)))
                if len(pending) > workers:
                    written += take_one()
            while pending:
                written += take_one()
        return written
    finally:
        ranges.close()
        db.close()
