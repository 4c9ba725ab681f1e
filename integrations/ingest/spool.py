"""The spool: where a webhook delivery is on disk before it is answered.

Each web process appends to a file of its own (one write and one fdatasync per batch);
an importer later moves the frames into raw_records in large transactions, resuming
exactly where it stopped. File format and recovery rules: docs/internals.md."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import sqlite3
import struct
import time
import zlib
from dataclasses import dataclass

import orjson

from integrations.ingest.drain import Drainer
from integrations.ops.metrics import count_imported, event_label
from store.db import DatabaseUnavailable, Store, durable_write, sync_wal
from store.evidence import Delivery, append_deliveries, utc_now

log = logging.getLogger(__name__)

MAGIC = b"ZWS1"
FRAME = struct.Struct("<4sII")
SUFFIX = ".spool"
TORN_SUFFIX = ".torn"
ROTATE_BYTES = 64 * 1024 * 1024  # a new file after this many bytes, so imported ones can go
MAX_PAYLOAD = 64 * 1024 * 1024  # far above any body the endpoint accepts; larger is damage
IMPORT_CHUNK_BYTES = 4 * 1024 * 1024  # per import transaction, so the write lock is held briefly


def spool_dir(db_path: str) -> str:
    """The spool directory of the database at `db_path`."""
    return os.path.abspath(db_path) + "-spool"


# --- frames (pure) ------------------------------------------------------------------------


def encode(delivery: Delivery, received_at: str) -> bytes:
    """One delivery as a frame; `received_at` is used when the delivery has none."""
    meta = orjson.dumps(
        [
            delivery.received_at or received_at,
            delivery.timestamp,
            delivery.signature,
            delivery.request_id,
            delivery.tracking_id,
            delivery.stale_timestamp,
        ]
    )
    payload = meta + b"\n" + delivery.body
    return FRAME.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes) -> tuple[list[Delivery], int]:
    """The deliveries of the complete, intact frames at the start of `data`, and their length.

    Stops at the first frame that is incomplete or damaged; what follows it is not read.
    """
    deliveries: list[Delivery] = []
    pos, size = 0, len(data)
    while pos + FRAME.size <= size:
        magic, length, crc = FRAME.unpack_from(data, pos)
        end = pos + FRAME.size + length
        if magic != MAGIC or length > MAX_PAYLOAD or end > size:
            break
        payload = data[pos + FRAME.size : end]
        if zlib.crc32(payload) != crc:
            break
        meta, _, body = payload.partition(b"\n")
        try:
            received_at, timestamp, signature, request_id, tracking_id, stale = orjson.loads(meta)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            break
        deliveries.append(Delivery(body, timestamp, signature, request_id, tracking_id, bool(stale), received_at))
        pos = end
    return deliveries, pos


# --- writing ------------------------------------------------------------------------------


class SpoolWriter:
    """One process's spool file. `append` returns once the bytes are on disk.

    Not for concurrent callers: the group commit's leader is the only one (integrations/ingest/group_commit.py).
    """

    def __init__(self, directory: str, *, rotate_bytes: int = ROTATE_BYTES):
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.path: str | None = None
        self.size = 0  # bytes of whole frames on disk in the current file
        self._fd: int | None = None
        self._pid = os.getpid()

    def append(self, data: bytes) -> None:
        """Append whole frames and fdatasync them; OSError if they may not be on disk."""
        if self._fd is None or self._pid != os.getpid() or self.size >= self.rotate_bytes:
            self._open()
        fd = self._fd
        assert fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fdatasync(fd)
        except OSError:
            # The tail may hold part of a frame, or bytes whose sync failed: nothing may be
            # appended after it, or an import would stop there and never see what follows.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)
            self.close()
            raise
        self.size += len(data)

    def close(self) -> None:
        """Close the file (releasing its writer lock: it can be imported and deleted)."""
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self.path = None
        self.size = 0

    def _open(self) -> None:
        self.close()
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        # Names sort by creation time, so importers take older files first.
        name = f"{int(time.time() * 1000):013d}-{os.getpid()}-{secrets.token_hex(4)}{SUFFIX}"
        path = os.path.join(self.directory, name)
        # Created under another name and locked before it is named `*.spool`: an importer
        # must never see a spool file without its writer's lock, or it would take it for
        # an abandoned empty file and delete it under the writer.
        creating = path + ".new"
        fd = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # "a writer has this file"; released when we close
            os.rename(creating, path)
            _fsync_dir(self.directory)  # the new name must survive a crash with its contents
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(creating)
            raise
        self._fd, self.path, self.size, self._pid = fd, path, 0, os.getpid()


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def has_writer(path: str) -> bool:
    """True while a live process holds `path` open as its spool file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our probe lock


# --- importing ----------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What one `import_spool` did: files read, deliveries moved, files deleted or set aside."""

    files: int = 0
    deliveries: int = 0
    deleted: int = 0
    torn: int = 0


def spool_files(directory: str) -> list[str]:
    """Names of the spool files in `directory`, oldest first."""
    try:
        return sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    except FileNotFoundError:
        return []


def imported_bytes(db: Store, name: str) -> int:
    row = db.execute("SELECT imported_bytes FROM spool_files WHERE name = ?", [name]).fetchone()
    return row[0] if row else 0


def import_file(
    db: Store, directory: str, name: str, *, timeout: float | None = None, finished: bool = False
) -> tuple[int, bool]:
    """Import one spool file from where the last import stopped; (deliveries, reached its end).

    `finished` says the caller knows no writer holds the file any more: then a file imported
    to its end is deleted, and one that ends in a torn frame is renamed `.torn` and kept.
    """
    path = os.path.join(directory, name)
    moved = 0
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return 0, True
    with f:
        while True:
            size = os.fstat(f.fileno()).st_size
            if imported_bytes(db, name) >= size:  # a read: no lock when there is nothing new
                at_end = True
                break
            created: list[bool] = []
            with durable_write(db, timeout=timeout, sync=False) as conn:
                # Read again under the lock: another process may have imported meanwhile.
                offset = imported_bytes(db, name)
                if offset >= size:
                    continue  # it did, to where we looked: look again
                f.seek(offset)
                deliveries, used = decode(f.read(min(size - offset, IMPORT_CHUNK_BYTES)))
                if deliveries:
                    created = [r.created for r in append_deliveries(conn, deliveries)]
                    conn.execute(
                        "INSERT INTO spool_files (name, imported_bytes, imported_records, updated_at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                        " imported_bytes = excluded.imported_bytes,"
                        " imported_records = spool_files.imported_records + excluded.imported_records,"
                        " updated_at = excluded.updated_at",
                        [name, offset + used, len(deliveries), utc_now()],
                    )
            if created:  # committed: count them (zoom_webhook_deliveries_total, issue 18)
                count_imported([event_label(d.body) for d in deliveries], created)
            moved += len(deliveries)
            if not used:  # an unfinished frame (writer busy) or a torn one
                at_end = False
                break
    if finished:
        _retire(db, directory, name, at_end)
    return moved, at_end


def _retire(db: Store, directory: str, name: str, at_end: bool) -> None:
    """Delete a writer-less file imported to its end; set aside one with a torn tail."""
    path = os.path.join(directory, name)
    if at_end:
        sync_wal(db.path)  # its rows must be durable before the file goes
        with contextlib.suppress(FileNotFoundError):  # another importer retired it first
            os.unlink(path)
            _fsync_dir(directory)
        with contextlib.suppress(sqlite3.Error, DatabaseUnavailable), durable_write(db, sync=False) as conn:
            conn.execute("DELETE FROM spool_files WHERE name = ?", [name])
        return
    # No writer will finish the frame: these bytes were never acknowledged (the answer
    # comes after the sync, and the sync after the whole frame). Keep them for inspection.
    log.warning("spool file %s ends in an incomplete frame; kept as %s%s", path, name, TORN_SUFFIX)
    with contextlib.suppress(FileNotFoundError):
        os.replace(path, path + TORN_SUFFIX)


def import_spool(db: Store, *, timeout: float | None = None, skip: str | None = None) -> ImportResult:
    """Import every spool file of `db`; delete those done whose writer is gone.

    `skip` names a file the caller is writing and imports itself.
    """
    directory = spool_dir(db.path)
    result = ImportResult()
    for name in spool_files(directory):
        if name == skip:
            continue
        finished = not has_writer(os.path.join(directory, name))
        moved, at_end = import_file(db, directory, name, timeout=timeout, finished=finished)
        result.files += 1
        result.deliveries += moved
        if finished:
            result.deleted += at_end
            result.torn += not at_end
    return result


def spool_status(db: Store) -> dict:
    """Files in the spool and bytes not yet in raw_records (for /healthz and operators)."""
    directory = spool_dir(db.path)
    names = spool_files(directory)
    pending = 0
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            pending += max(0, os.stat(os.path.join(directory, name)).st_size - imported_bytes(db, name))
    torn = []
    with contextlib.suppress(FileNotFoundError):
        torn = sorted(n for n in os.listdir(directory) if n.endswith(TORN_SUFFIX))
    return {"files": len(names), "pending_bytes": pending, "torn_files": torn}


def oldest_unimported(db: Store) -> str | None:
    """received_at of the oldest spooled delivery not yet in raw_records, or None (issue 18)."""
    directory = spool_dir(db.path)
    oldest: str | None = None
    for name in spool_files(directory):
        offset = imported_bytes(db, name)
        try:
            with open(os.path.join(directory, name), "rb") as f:
                f.seek(offset)
                # The frame header and the meta line are at most a few hundred bytes.
                head = f.read(FRAME.size + 512)
        except FileNotFoundError:
            continue
        if len(head) < FRAME.size:
            continue
        magic, length, _ = FRAME.unpack_from(head)
        meta = head[FRAME.size : FRAME.size + length].partition(b"\n")[0]
        if magic != MAGIC:
            continue
        try:
            received_at = orjson.loads(meta)[0]
        except (orjson.JSONDecodeError, IndexError, TypeError):
            continue
        if isinstance(received_at, str) and (oldest is None or received_at < oldest):
            oldest = received_at
    return oldest


class Importer(Drainer):
    """Moves the spool into raw_records from one web process at a time: the importer.

    The first process to take `<spool>/import.lock` imports every spool file, its own and
    the other web processes', every `delay_seconds` while there is anything to import: one
    transaction per file for everything that arrived meanwhile, from a background thread,
    so no request thread spends time on it. One importer means one writer of raw_records
    among the web processes: its page cache stays valid between imports and the others
    never wait for the write lock. When it stops, its lock is free and the next process
    that answers a webhook takes over. Every process imports what it spooled when it stops.

    With `delay_seconds` 0 the thread that answered imports at once (each answer's
    delivery is in raw_records before the next request: tests, very low traffic).
    """

    LOCK_NAME = "import.lock"
    thread_name = "spool-import"

    def __init__(self, connect, writer: SpoolWriter, *, timeout: float, delay_seconds: float):
        super().__init__(delay_seconds=delay_seconds)
        self._pid = os.getpid()
        self._connect = connect
        self.writer = writer
        self.timeout = timeout
        self._lock_fd: int | None = None
        self.imported = 0

    def _wake_thread(self) -> None:
        if self._lock_fd is None:
            self._wake.set()  # not the importer (yet): try to become it

    def is_importer(self) -> bool:
        """True once this process holds the import lock (kept until it exits)."""
        if self._lock_fd is not None and self._pid == os.getpid():
            return True
        os.makedirs(self.writer.directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.writer.directory, self.LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd, self._pid = fd, os.getpid()
        return True

    def _deferred(self) -> None:
        while not self._stopped.is_set():
            if self.is_importer():
                time.sleep(self.delay_seconds)  # let the next batch gather
                self.drain()
            else:
                self._wake.wait()  # the next answer: try to take over
                self._wake.clear()

    def _at_exit(self) -> None:
        self.writer.close()  # our file has no writer now: imported to its end, it goes
        super()._at_exit()

    def _run_once(self) -> None:
        now = time.monotonic()
        if now < self._retry_after:
            return
        try:
            result = import_spool(self._connect(), timeout=self.timeout)
            self.imported += result.deliveries
        except (DatabaseUnavailable, sqlite3.Error, OSError) as e:
            # The deliveries stay in the spool, on disk; retry in a second.
            self._retry_after = time.monotonic() + 1.0
            log.warning("spool import postponed: %s", e)
