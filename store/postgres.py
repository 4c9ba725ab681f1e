"""The PostgreSQL store: the same interface as the SQLite `Store`, over psycopg 3.

It runs the store's SQL unchanged (`?` and `:name` placeholders become psycopg's in one
place, `translate`); writers serialize on an advisory lock as SQLite's writers do on their
lock file, and every commit is synchronous. docs/scaling.md says when to use it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from store.errors import DatabaseOpenError, DatabaseUnavailable

URL_PREFIXES = ("postgresql://", "postgres://")
# How long a PostgreSQL server may take to answer a connection attempt.
CONNECT_TIMEOUT_SECONDS = 5


def is_postgres_url(location: str) -> bool:
    """True when `location` (DATABASE_URL's target) names a PostgreSQL server."""
    return location.startswith(URL_PREFIXES)


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


# Quoted strings, identifiers and comments pass through; `?` and `:name` outside them become
# psycopg's %s and %(name)s, and a literal % is doubled.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|(?<!:):([A-Za-z_]\w*)|\?|%")


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The store's SQL (sqlite3 placeholders) in psycopg's placeholder syntax."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return token.replace("%", "%%")  # psycopg reads % inside literals too

    return _TOKENS.sub(replace, sql)


def advisory_key(name: str) -> int:
    """A stable 64-bit advisory-lock key for a lock name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def is_unavailable(error: BaseException) -> bool:
    """True for errors that mean "the database cannot take this now" (vs a bug in the SQL)."""
    if isinstance(error, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable):
        return True
    if isinstance(error, psycopg.errors.DiskFull | psycopg.errors.InsufficientResources):
        return True
    # A lost connection, a server shutting down or refusing connections.
    return isinstance(error, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        error, psycopg.errors.SyntaxErrorOrAccessRuleViolation
    )


class PgConnection:
    """A psycopg connection that speaks the sqlite3 subset the store uses."""

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Any:  # a DB-API cursor
        cursor = self.raw.cursor()
        cursor.execute(translate(sql), params if params else None)
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), list(rows))
        return cursor

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, lock_timeout: float) -> psycopg.Connection:
    """A new autocommit connection with synchronous commits; DatabaseUnavailable when refused."""
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.OperationalError as e:
        raise DatabaseUnavailable(f"cannot connect to {redact(url)}: {str(e).strip().splitlines()[0]}") from None
    # A 2xx promises the delivery survives a crash of the server: never an asynchronous commit,
    # whatever the server's default. Lock waits are bounded like SQLite's.
    raw.execute("SET synchronous_commit = on")
    raw.execute(f"SET lock_timeout = {max(1, int(lock_timeout * 1000))}")
    return raw


class AdvisoryLock:
    """A named lock shared by every process using one PostgreSQL database (session-level)."""

    def __init__(self, store: PostgresStore, name: str):
        self.store = store
        self.key = advisory_key(name)
        self._thread_lock = threading.RLock()

    @contextlib.contextmanager
    def hold(self, timeout: float) -> Iterator[None]:
        """Hold the lock, or raise DatabaseUnavailable after `timeout` seconds."""
        if not self._thread_lock.acquire(timeout=timeout):
            raise DatabaseUnavailable(f"database lock not acquired within {timeout:g}s")
        try:
            deadline = time.monotonic() + timeout
            delay = 0.001
            while not self.store.execute("SELECT pg_try_advisory_lock(?)", [self.key]).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise DatabaseUnavailable(f"database lock not acquired within {timeout:g}s")
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):  # a lost session has released it already
                    self.store.execute("SELECT pg_advisory_unlock(?)", [self.key])
        finally:
            self._thread_lock.release()


# The lock every writer transaction holds, as SQLite's writers hold the database's lock file:
# the chain head, max + 1 ids and read-then-write steps stay consistent across hosts.
WRITE_LOCK = "attendance-worker:write"


class PostgresStore:
    """A PostgreSQL database with the SQLite Store's interface (execute, query, durable writes)."""

    is_postgres = True

    def __init__(self, url: str, *, lock_timeout: float):
        self.path = url  # what the SQLite store calls its path: where the data is
        self.lock_timeout = lock_timeout
        self._raw = connect(url, lock_timeout=lock_timeout)
        self._conn = PgConnection(self._raw)
        self._locks: dict[str, AdvisoryLock] = {}

    @property
    def conn(self) -> PgConnection:
        """The connection, made anew when the server dropped the last one (it restarted)."""
        if self._raw.closed or self._raw.broken:
            self._raw = connect(self.path, lock_timeout=self.lock_timeout)
            self._conn = PgConnection(self._raw)
        return self._conn

    def execute(self, sql: str, params: Any = None) -> Any:
        """Run one statement; the cursor gives tuples, like sqlite3's."""
        try:
            return self.conn.execute(sql, params)
        except psycopg.Error as e:
            if is_unavailable(e):
                raise DatabaseUnavailable(str(e).strip()) from e
            raise

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self.conn.executemany(sql, rows)

    def query(self, sql: str, params: Any = None) -> Iterator[dict[str, Any]]:
        """Rows of `sql` as dicts, like sqlite-utils' `Database.query`."""
        cursor = self.execute(sql, params)
        names = [c.name for c in cursor.description or ()]
        for row in cursor:
            yield dict(zip(names, row, strict=True))

    def executescript(self, script: str) -> None:
        """Run DDL as written (no placeholders): migrations."""
        self.conn.raw.execute(script.encode())

    def close(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._raw.close()

    def named_lock(self, name: str) -> AdvisoryLock:
        """A lock called `name` shared by every process and host using this database."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = AdvisoryLock(self, f"attendance-worker:{name}")
        return lock

    @property
    def write_lock(self) -> AdvisoryLock:
        return self.named_lock("write")

    @contextlib.contextmanager
    def durable_write(self, *, timeout: float | None = None, sync: bool = True) -> Iterator[PgConnection]:
        """A write transaction, committed (synchronously) when the block exits without error.

        Every writer takes the write advisory lock inside its transaction, so writes are
        serialized across processes and hosts as on SQLite. `sync` is SQLite's; PostgreSQL
        always syncs its commit (synchronous_commit = on).
        """
        timeout = self.lock_timeout if timeout is None else timeout
        conn = self.conn
        try:
            conn.execute("BEGIN")
            try:
                conn.execute(f"SET LOCAL lock_timeout = {max(1, int(timeout * 1000))}")
                conn.execute("SELECT pg_advisory_xact_lock(?)", [advisory_key(WRITE_LOCK)])
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if not conn.raw.closed and conn.in_transaction:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
                raise
        except psycopg.Error as e:
            if is_unavailable(e):
                raise DatabaseUnavailable(str(e).strip()) from e
            raise

    @contextlib.contextmanager
    def read_snapshot(self) -> Iterator[PgConnection]:
        """A read transaction that sees one snapshot, like a SQLite WAL read."""
        conn = self.conn
        if conn.in_transaction:
            yield conn
            return
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def integrity_check(self) -> list[str]:
        """What is wrong with the database's structure: PostgreSQL checks pages itself."""
        self.execute("SELECT 1 FROM raw_records LIMIT 1")
        return ["ok"]

    def size_bytes(self) -> int:
        """The database's size on the server's disk."""
        return int(self.execute("SELECT pg_database_size(current_database())").fetchone()[0])

    def page_size(self) -> int:
        """Bytes per database page (PostgreSQL's block size)."""
        return int(self.execute("SELECT current_setting('block_size')").fetchone()[0])

    def disk_free_bytes(self) -> int | None:
        """None: a client cannot see the free space of the server's disk (watch it there)."""
        return None


def open_postgres(url: str, *, lock_timeout: float = 2.0, read_only: bool = False) -> PostgresStore:
    """Connect to the PostgreSQL database at `url`; DatabaseUnavailable when it does not answer.

    `read_only` makes every transaction of the session read-only (verify and exports).
    """
    try:
        store = PostgresStore(url, lock_timeout=lock_timeout)
        if read_only:
            store.execute("SET default_transaction_read_only = on")
        return store
    except psycopg.Error as e:
        raise DatabaseOpenError(f"cannot use database {redact(url)}: {e}") from None
