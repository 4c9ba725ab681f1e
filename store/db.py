"""Opening the SQLite database (`Store`), and the write path every writer shares.

Writers commit in WAL mode under a short cross-process lock and fdatasync the WAL after
releasing it, so writers in several processes share syncs (docs/internals.md)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Generic, TypeVar

import sqlite_utils

from store.errors import DatabaseOpenError, DatabaseUnavailable
from store.postgres import NO_TABLES, PgConnection, PostgresStore, is_postgres_url, open_postgres, redact

__all__ = ["DatabaseOpenError", "DatabaseUnavailable", "PostgresStore", "Store", "open_db"]


def check_database_file(path: str, *, must_exist: bool, writable: bool = True) -> None:
    """Raise DatabaseOpenError unless `path` is (or, without `must_exist`, may become) a SQLite file."""
    if path == ":memory:":
        return
    if os.path.isdir(path):
        raise DatabaseOpenError(f"database {redact(path)} is a directory, not a SQLite file")
    if not os.path.exists(path):
        if must_exist:
            raise DatabaseOpenError(f"database {redact(path)} does not exist (check DATABASE_URL or --database)")
        return
    # Never open() the file here to read its header: closing any descriptor of a file drops
    # every POSIX lock this process holds on it, SQLite's included. SQLite itself says
    # "file is not a database" (open_db turns that into DatabaseOpenError).
    if not os.access(path, os.R_OK):
        raise DatabaseOpenError(f"cannot read database {redact(path)}: permission denied")
    if must_exist and os.path.getsize(path) == 0:
        raise DatabaseOpenError(f"database {redact(path)} is an empty file, not an attendance-worker database")
    if writable and not os.access(path, os.W_OK):
        raise DatabaseOpenError(
            f"database {redact(path)} is read-only: the service writes to it (verify and export-raw read a read-only copy)"
        )


# Errors SQLite reports when the write cannot happen; all mean "try again later" to Zoom.
_UNAVAILABLE_MESSAGES = (
    "disk is full",
    "database or disk is full",
    "readonly",
    "read-only",
    "locked",
    "busy",
    "disk i/o error",
    "unable to open",
)


def is_unavailable_error(error: BaseException) -> bool:
    """True for SQLite errors that mean the write cannot be stored now (vs a bug)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
        return True
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return any(m in message for m in _UNAVAILABLE_MESSAGES)
    return False


def create_private_file(path: str) -> None:
    """Create `path` readable and writable by its owner only, if it does not exist yet."""
    if path == ":memory:" or os.path.exists(path):
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    os.close(fd)
    # The new directory entry must survive a crash too.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# The files SQLite and our write lock put beside a database file.
SIDE_FILE_SUFFIXES = ("-wal", "-shm", "-journal", "-lock")


def _missing_directories(directory: str) -> list[str]:
    """`directory` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return missing


@contextlib.contextmanager
def removed_on_failure(path: str) -> Iterator[None]:
    """If the block fails, remove the SQLite file `path`, its side files and directories it created.

    Only a file that is not there yet is removed: an existing one (and all beside it) is left
    as it was. Close every connection to `path` inside the block. PostgreSQL URLs: no-op.
    """
    if is_postgres_url(path) or path == ":memory:" or os.path.lexists(path):
        yield
        return
    directories = _missing_directories(os.path.dirname(os.path.abspath(path)))
    files = [path + suffix for suffix in ("", *SIDE_FILE_SUFFIXES) if not os.path.lexists(path + suffix)]
    try:
        yield
    except BaseException:
        _locks.discard(os.path.abspath(path), WriteLock.close)
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        for directory in directories:
            with contextlib.suppress(OSError):  # no longer empty: something else uses it
                os.rmdir(directory)
        raise


class SQLiteStore(sqlite_utils.Database):
    """The SQLite database: a sqlite-utils Database that knows its file and its write lock."""

    is_postgres = False

    def __init__(self, conn: sqlite3.Connection, *, path: str, lock_timeout: float):
        super().__init__(conn)
        self.path = path
        self.lock_timeout = lock_timeout

    @property
    def write_lock(self) -> WriteLock:
        """The lock every writer of this database file holds (see `durable_write`)."""
        return write_lock(self.path)

    def named_lock(self, name: str) -> WriteLock:
        """A lock called `name` shared by every process using this database file."""
        return write_lock(f"{self.path}-{name}")

    def durable_write(self, *, timeout: float | None = None, sync: bool = True) -> contextlib.AbstractContextManager:
        """See `durable_write`."""
        return _sqlite_durable_write(self, timeout=timeout, sync=sync)

    def leader_lock(self, name: str) -> FileLeaderLock:
        """The lock the process leading `name` holds while it leads: a lock file beside the database."""
        return FileLeaderLock(None if self.path == ":memory:" else f"{self.path}-{name}")

    def read_snapshot(self) -> contextlib.AbstractContextManager:
        """See `read_snapshot`."""
        return _sqlite_read_snapshot(self)

    def integrity_check(self) -> list[str]:
        """SQLite's integrity check: ["ok"], or what is wrong."""
        return [row[0] for row in self.execute("PRAGMA integrity_check").fetchall()]

    def size_bytes(self) -> int:
        """The database file's size, its WAL included."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))

    def page_size(self) -> int:
        """Bytes per database page."""
        return int(self.execute("PRAGMA page_size").fetchone()[0])

    def disk_free_bytes(self) -> int | None:
        """Bytes free for this user on the filesystem holding the database file."""
        return shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free

    # -- copy-db (store/copy.py): what differs between the stores when moving whole tables --

    def data_tables(self) -> list[str]:
        """The tables holding the service's data (not SQLite's or the migrations' bookkeeping)."""
        return sorted(t for t in self.table_names() if not t.startswith("sqlite") and t != "_sqlite_migrations")

    def table_columns(self, table: str) -> list[str]:
        """The columns of `table`, in their order."""
        return [column.name for column in self.table(table).columns]

    def stream(self, sql: str, batch_size: int) -> Iterator[list[tuple]]:
        """The rows of `sql` in lists of at most `batch_size`, read as they are needed."""
        cursor = self.execute(sql)
        try:
            while batch := cursor.fetchmany(batch_size):
                yield batch
        finally:
            cursor.close()

    def defer_foreign_keys(self, conn: sqlite3.Connection) -> None:
        """Check foreign keys at the commit of the open transaction, not at each row."""
        conn.execute("PRAGMA defer_foreign_keys = ON")

    def insert_rows(self, conn: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Insert `rows` (values of `columns`, ids included) into `table` inside the open transaction."""
        names = ", ".join(f'"{c}"' for c in columns)
        conn.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({", ".join("?" * len(columns))})', rows)

    def after_insert_rows(self, conn: sqlite3.Connection, table: str) -> None:
        """Nothing: SQLite's next rowid is always max + 1."""


# The store interface: SQLite (the embedded default) or PostgreSQL (store/postgres.py).
Store = SQLiteStore | PostgresStore


def open_db(path: str, *, lock_timeout: float = 2.0, create: bool = True) -> Store:
    """Open the database at `path` (a SQLite file, or a PostgreSQL URL).

    SQLite: in WAL mode, creating the file owner-only if it is new.

    `create=False` (read commands) refuses a missing file instead of creating it and its
    directories. Either way a directory, a non-SQLite file or an unreadable one raises
    DatabaseOpenError with one clear sentence.
    """
    if is_postgres_url(path):
        return open_postgres(path, lock_timeout=lock_timeout, must_exist=not create)
    check_database_file(path, must_exist=not create)
    try:
        if create:
            create_private_file(path)
        # SQLite's own busy handler is the fallback for writers that skip our lock (an
        # operator's sqlite-utils, a backup); ours wakes waiters sooner.
        conn = sqlite3.connect(path, timeout=lock_timeout, isolation_level=None, check_same_thread=False)
    except (sqlite3.Error, OSError) as e:
        raise DatabaseOpenError(f"cannot open database {redact(path)}: {e}") from None
    try:
        _use_wal(conn, path, lock_timeout)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as e:
        conn.close()
        if "locked" in str(e).lower() or "busy" in str(e).lower():
            raise DatabaseUnavailable(f"database {redact(path)} is busy: {e}") from None
        if "not a database" in str(e):
            raise DatabaseOpenError(f"{redact(path)} is not a SQLite database") from None
        raise DatabaseOpenError(f"cannot use database {redact(path)}: {e}") from None
    return SQLiteStore(conn, path=path, lock_timeout=lock_timeout)


def open_existing(path: str, *, lock_timeout: float = 2.0) -> Store:
    """The database as it is, never created nor migrated (doctor): DatabaseOpenError when it
    is missing or has no attendance-worker tables."""
    if not is_postgres_url(path) and path != ":memory:":
        if not os.path.exists(path):
            raise DatabaseOpenError(f"{redact(path)} does not exist: {NO_TABLES}")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise DatabaseOpenError(f"{redact(path)} is an empty file: {NO_TABLES}")
    db = open_db(path, lock_timeout=lock_timeout, create=False)
    if isinstance(db, SQLiteStore) and "_sqlite_migrations" not in db.table_names():
        db.close()
        raise DatabaseOpenError(f"{redact(path)}: {NO_TABLES}")
    return db


def stream_rows(conn: Any, sql: str, params: Any = None) -> Generator[tuple, None, None]:
    """The rows of one long SELECT (the raw log) as they come, never all of them in memory.

    `conn` is a store or its connection. SQLite's cursor steps through the result already;
    psycopg's would fetch all of it first, so a PostgreSQL connection streams it in chunks.
    Nothing else may run on `conn` until the rows are read or the iterator closed.
    """
    if isinstance(conn, PostgresStore):
        conn = conn.conn
    if isinstance(conn, PgConnection):
        yield from conn.stream(sql, params)
        return
    cursor = conn.execute(sql, () if params is None else params)
    try:
        yield from cursor
    finally:
        cursor.close()


def database_exists(location: str) -> bool:
    """True when there is a database at `location` to read: an existing SQLite file, or a
    PostgreSQL URL (its server says what is wrong when asked)."""
    return is_postgres_url(location) or os.path.exists(location)


def _use_wal(conn: sqlite3.Connection, path: str, lock_timeout: float) -> None:
    """Put the database in WAL mode (it stays so): once per file, under the writers' lock.

    Several processes opening a new file at once (gunicorn's workers booting) all try the
    switch; SQLite answers BUSY at once, without its busy handler, to all but one, so the
    switch is made by one process at a time and re-read after the lock is held.
    """
    if path == ":memory:" or conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    with write_lock(path).hold(timeout=lock_timeout):
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as e:
                # A process outside our lock (an operator's sqlite3 shell) may still hold it.
                if "locked" not in str(e).lower() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)


_local = threading.local()


def thread_db(path: str, *, lock_timeout: float = 2.0) -> Store:
    """A connection reused by this thread of this process (opening one per request costs)."""
    key = (os.getpid(), path, lock_timeout)
    cache = getattr(_local, "dbs", None)
    if cache is None or getattr(_local, "pid", None) != os.getpid():
        cache = _local.dbs = {}
        _local.pid = os.getpid()
    db = cache.get(key)
    if db is None:
        db = cache[key] = open_db(path, lock_timeout=lock_timeout)
    return db


def close_thread_db(path: str) -> None:
    """Close this thread's kept connection to `path`, if it has one (before the database goes away)."""
    cache = getattr(_local, "dbs", None) or {}
    for key in [k for k in cache if k[1] == path]:
        cache.pop(key).close()


class WriteLock:
    """An exclusive, bounded lock shared by every process writing to one database file."""

    def __init__(self, db_path: str):
        self.path = db_path + "-lock"
        self._fd: int | None = None
        self._pid = os.getpid()
        self._thread_lock = threading.Lock()

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close the lock file (its file is about to be removed)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Hold the lock, or raise DatabaseUnavailable after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            raise DatabaseUnavailable(f"database write lock not acquired within {timeout:g}s")
        try:
            fd = self._file()
            delay = 0.0001
            # flock cannot time out by itself; poll with short, growing sleeps.
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DatabaseUnavailable(f"database write lock not acquired within {timeout:g}s") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.002)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class FileLeaderLock:
    """A lock one process at a time holds for as long as it leads; released when it exits."""

    def __init__(self, path: str | None):
        self.path = path  # None: an in-memory database, which only its process sees
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """True when this process holds the lock now (taking it if it is free); never waits."""
        if self._fd is not None or self.path is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


T = TypeVar("T")


class PerProcess(Generic[T]):
    """One object per database path in each process, made on first use (a forked child makes its own)."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, str], T] = {}
        self._guard = threading.Lock()

    def get(self, db_path: str, make: Callable[[], T]) -> T:
        """The object for `db_path` in this process: `make()` the first time."""
        key = (os.getpid(), db_path)
        found = self._made.get(key)  # no lock on the hot path: a dict read is atomic
        if found is None:
            with self._guard:
                found = self._made.get(key)
                if found is None:
                    found = self._made[key] = make()
        return found

    def discard(self, db_path: str, close: Callable[[T], None]) -> None:
        """Forget this process's object for `db_path` (if made), `close` called on it first."""
        with self._guard:
            found = self._made.pop((os.getpid(), db_path), None)
        if found is not None:
            close(found)


_locks: PerProcess[WriteLock] = PerProcess()


def write_lock(db_path: str) -> WriteLock:
    """The process-wide WriteLock for `db_path`."""
    return _locks.get(os.path.abspath(db_path), lambda: WriteLock(db_path))


def sync_wal(db_path: str) -> None:
    """fdatasync the WAL so every commit made before this call is on disk."""
    try:
        fd = os.open(db_path + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        # The last connection checkpointed and removed the WAL: the frames are in the
        # main file, which the checkpoint synced. Sync it again to be sure.
        fd = os.open(db_path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _begin_immediate(conn: sqlite3.Connection, *, remaining: float, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting at most `remaining` seconds for SQLite's own write lock."""
    conn.execute(f"PRAGMA busy_timeout = {max(0, int(remaining * 1000))}")
    try:
        conn.execute("BEGIN IMMEDIATE")
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")


# Rows per multi-row statement: one statement, not one per row (each is a round trip to
# PostgreSQL and through the GIL), within both stores' bound-parameter limits (SQLite 32,766,
# PostgreSQL 65,535) for tables up to 60 columns.
ROWS_PER_STATEMENT = 500


@functools.lru_cache(maxsize=64)
def insert_sql(table: str, columns: tuple[str, ...], rows: int, tail: str = "") -> str:
    """`INSERT INTO table (columns) VALUES (?, …), …` for `rows` rows, then `tail` (an ON CONFLICT clause)."""
    one = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([one] * rows)}{' ' + tail if tail else ''}"


def chunks(items: Sequence[T], size: int = ROWS_PER_STATEMENT) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`, for one statement each."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def durable_write(db: Store, *, timeout: float | None = None, sync: bool = True) -> contextlib.AbstractContextManager:
    """A write transaction that is on disk when the block exits without error.

    Yields the connection to write with. `timeout` bounds the wait for the lock (default:
    the store's lock_timeout); `sync=False` (SQLite) skips the fdatasync, for writes whose
    source is already durable. Raises DatabaseUnavailable when the write cannot happen now.
    """
    return db.durable_write(timeout=timeout, sync=sync)


@contextlib.contextmanager
def _sqlite_durable_write(db: SQLiteStore, *, timeout: float | None, sync: bool) -> Iterator[sqlite3.Connection]:
    """durable_write on SQLite: under the lock file, then fdatasync of the WAL.

    `timeout` bounds the wait for the lock (default: the connection's lock_timeout).
    `sync=False` skips the fdatasync: for writes whose source is already durable (spool
    imports, integrations/ingest/spool.py), where a later `sync_wal` or the next sync covers them.
    Raises DatabaseUnavailable when the lock is not had in time or SQLite cannot write.
    """
    path = db.path
    conn = db.conn
    default = db.lock_timeout
    timeout = default if timeout is None else timeout
    deadline = time.monotonic() + timeout
    try:
        with write_lock(path).hold(timeout):
            # The flock wait and SQLite's busy wait (for a writer that skips our lock) share
            # one bound; added up they took twice as long, past Zoom's 3 s (issue 7).
            _begin_immediate(conn, remaining=deadline - time.monotonic(), timeout=default)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if sync:
            sync_wal(path)
    except (sqlite3.OperationalError, OSError) as e:
        if is_unavailable_error(e):
            raise DatabaseUnavailable(str(e)) from e
        raise


def read_snapshot(db: Store) -> contextlib.AbstractContextManager:
    """A read transaction: every query inside sees the database as of its first read
    (writers are not blocked). Inside a transaction already open on `db`, that one serves."""
    return db.read_snapshot()


@contextlib.contextmanager
def _sqlite_read_snapshot(db: SQLiteStore) -> Iterator[sqlite3.Connection]:
    conn = db.conn
    if conn.in_transaction:
        yield conn
        return
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def query_one(db: Store, sql: str, params: Any = ()) -> Any:
    """The first column of the first row of `sql`, or None."""
    row = db.execute(sql, params).fetchone()
    return row[0] if row else None
