"""The PostgreSQL store: the same interface as the SQLite `Store`, over psycopg 3.

It runs the store's SQL unchanged (`?` and `:name` placeholders become psycopg's in one
place, `translate`); writers serialize on an advisory lock as SQLite's writers do on their
lock file, and every commit is synchronous. docs/scaling.md says when to use it."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus

from store.errors import DatabaseOpenError, DatabaseUnavailable, DatabaseUrlError

URL_PREFIXES = ("postgresql://", "postgres://")
# How long a PostgreSQL server may take to answer a connection attempt.
CONNECT_TIMEOUT_SECONDS = 5
# What either store says of a database without the worker's tables (a mistyped URL or path).
NO_TABLES = "no attendance-worker tables: wrong database?"
# Rows per chunk of a streamed read (the raw log: a chunk of bodies is a few hundred KB).
STREAM_CHUNK_ROWS = 500


def is_postgres_url(location: str) -> bool:
    """True when `location` (DATABASE_URL's target) names a PostgreSQL server."""
    return location.startswith(URL_PREFIXES)


# `scheme://user:password@`, whatever the scheme (a misspelled one too) and however many slashes:
# the password runs to the LAST '@' (an unencoded '@' in it must not leak the rest).
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/+[^:/@]*):.*@", re.S)
# The same inside a message: a URL ends at whitespace.
_TEXT_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*:/+[^\s:/@'\"()]*):\S*@")
PERCENT_ENCODE_HINT = (
    "special characters in the password must be percent-encoded (@ %40, : %3A, / %2F, # %23, % %25),"
    " or leave the password out of the URL and set PGPASSWORD or ~/.pgpass"
)


def redact(url: str) -> str:
    """`url` without its password, for messages and logs; all after :// when it does not parse."""
    masked, found = _URL_PASSWORD.subn(r"\1:***@", url, count=1)
    if found:
        return masked
    if is_postgres_url(url):
        try:
            conninfo_to_dict(url)
        except psycopg.Error:
            return url.split("://", 1)[0] + "://***"
    return url


def redact_text(text: str) -> str:
    """`text` (a message) with the password of every `scheme://user:password@` in it masked."""
    return _TEXT_PASSWORD.sub(r"\1:***@", text)


def first_line(error: BaseException) -> str:
    """The first line of a driver's message (PostgreSQL adds LINE 1: and a caret below it)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def raw_userinfo(url: str) -> str | None:
    """What must be `user:password` in `url`: the raw text between :// and the LAST '@'.

    libpq ends the userinfo at the first '@' or '/', so an unencoded '@', '/' or '?' in a
    password makes the rest of it a host, a port or a database name (and quotes it in errors).
    """
    rest = url.split("://", 1)[1] if "://" in url else None
    if rest is None or "@" not in rest:
        return None
    return rest[: rest.rindex("@")]


def _without_userinfo(url: str) -> str:
    """`url` with its userinfo masked: the user stays only when it cannot hold a piece of the password."""
    scheme, rest = url.split("://", 1)
    userinfo, host = rest[: rest.rindex("@")], rest[rest.rindex("@") + 1 :]
    user = userinfo.split(":", 1)[0]
    shown = f"{user}:***" if ":" in userinfo and not _USERINFO_DELIMITERS.search(user) else "***"
    return f"{scheme}://{shown}@{host}"


# Characters that cannot be in a userinfo unencoded: libpq (or any URL parser) splits there.
_USERINFO_DELIMITERS = re.compile(r"[@#?/]")


def check_url(url: str) -> None:
    """DatabaseUrlError unless libpq can parse `url` as written (an unencoded '@', '#', '/', '?' or '%' in the password)."""
    userinfo = raw_userinfo(url)
    if userinfo is not None and _USERINFO_DELIMITERS.search(userinfo):
        # Refused before libpq sees it: it would parse a piece of the password as a host.
        raise DatabaseUrlError(f"cannot parse the PostgreSQL URL {_without_userinfo(url)}: {PERCENT_ENCODE_HINT}")
    try:
        conninfo_to_dict(url)
    except psycopg.Error:
        # libpq's message quotes the part it could not parse: a piece of the password.
        raise DatabaseUrlError(f"cannot parse the PostgreSQL URL {redact(url)}: {PERCENT_ENCODE_HINT}") from None


# Pieces of a password shorter than this are not masked in messages: they would mask
# ordinary words and digits, and give little of the password away.
MIN_SECRET_PIECE = 3


def password_pieces(url: str) -> list[str]:
    """Every piece of `url`'s raw password libpq could quote in a message (as host, port,
    database...): the whole, and what lies before, after and between '@', '#', ':', '/', '?'; longest first."""
    userinfo = raw_userinfo(url)
    if userinfo is None or ":" not in userinfo:
        return []
    password = userinfo.split(":", 1)[1]
    pieces = {password}
    cuts = [m.start() for m in re.finditer(r"[@#:/?]", password)]
    for cut in cuts:
        pieces.update((password[:cut], password[cut + 1 :]))
    pieces.update(re.split(r"[@#:/?]", password))
    pieces.update([unquote(piece) for piece in pieces])
    return sorted((p for p in pieces if len(p) >= MIN_SECRET_PIECE), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """`text` with every password piece of `url` masked, and every URL's password in it."""
    for piece in password_pieces(url):
        text = text.replace(piece, "***")
    return redact_text(text)


def without_password(url: str) -> tuple[str, str | None]:
    """`url` as a libpq connection string without its password, and the password (for PGPASSWORD)."""
    check_url(url)
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    return make_conninfo("", **params), None if password is None else str(password)


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
        if params:
            cursor.execute(translate(sql), params)
        else:  # without parameters psycopg sends the text as it is: a % there is a literal %
            cursor.execute(sql.encode())
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        cursor = self.raw.cursor()
        cursor.executemany(translate(sql), list(rows))
        return cursor

    def stream(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> Iterator[tuple]:
        """Rows of one SELECT in chunks as the server sends them, never the whole result in memory."""
        yield from self.raw.cursor().stream(translate(sql), params if params else None, size=STREAM_CHUNK_ROWS)

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


# libpq's words for a connection that can never work as configured (wrong password, database,
# role, port or host): the operator must fix the URL; waiting will not help.
_PERMANENT_CONNECT_ERRORS = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "invalid port",
    "invalid integer value",
    "failed to resolve host",
    "could not translate host name",
    "no pg_hba.conf entry",
    "invalid uri",
    "invalid connection option",
    "invalid sslmode",
    "is not permitted to log in",
)


def connect_error(url: str, error: BaseException) -> DatabaseUnavailable:
    """The store error for a failed connection: DatabaseOpenError when the configuration is wrong."""
    reason = first_line(error).removeprefix("connection failed: ").removeprefix("connection is bad: ")
    message = scrub(f"cannot connect to {redact(url)}: {reason}", url)
    if any(words in reason.lower() for words in _PERMANENT_CONNECT_ERRORS):
        return DatabaseOpenError(message)
    return DatabaseUnavailable(message)  # refused, timed out, starting up: it may come back


def connect(url: str, *, lock_timeout: float, **options: Any) -> psycopg.Connection:
    """A new autocommit connection with synchronous commits.

    DatabaseUnavailable when the server does not answer; DatabaseOpenError when the URL is
    wrong (password, database, port, host). `options` are more libpq parameters (keepalives)."""
    check_url(url)
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS, **options)
    except psycopg.Error as e:
        raise connect_error(url, e) from None
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


_stream_numbers = itertools.count(1)  # names of server-side cursors, unique in the process

# A leader's session must end soon after its host dies or is cut off, so that its advisory
# lock is released and another worker takes over within a minute (docs/scaling.md): TCP
# keepalives on both ends, and a bound on unacknowledged data, instead of Linux's two hours.
LEADER_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
LEADER_TCP_USER_TIMEOUT_MS = 25_000


class LeaderLock:
    """A session advisory lock on a connection of its own, held for as long as the process leads."""

    def __init__(self, url: str, name: str, *, lock_timeout: float):
        self.url = url
        self.key = advisory_key(name)
        self.lock_timeout = lock_timeout
        self._raw: psycopg.Connection | None = None
        self._held = False

    def _session(self) -> psycopg.Connection:
        if self._raw is None or self._raw.closed or self._raw.broken:
            self._held = False  # a new session holds nothing
            self._raw = connect(
                self.url,
                lock_timeout=self.lock_timeout,
                tcp_user_timeout=LEADER_TCP_USER_TIMEOUT_MS,
                application_name="attendance-worker leader lock",
                **LEADER_KEEPALIVE,
            )
            # The server's side of the keepalives: it ends a vanished leader's session.
            for setting, value in (("idle", 10), ("interval", 5), ("count", 3)):
                self._raw.execute(f"SET tcp_keepalives_{setting} = {value}")
            self._raw.execute(f"SET tcp_user_timeout = {LEADER_TCP_USER_TIMEOUT_MS}")
        return self._raw

    def try_acquire(self) -> bool:
        """True when this process holds the lock now (taking it if it is free); never waits.

        While held, each call checks that the session is alive: a session the server ended
        (restart, failover, partition) released the lock, and this process no longer leads.
        """
        try:
            session = self._session()
            if self._held:
                session.execute("SELECT 1")
            else:
                row = session.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
                self._held = bool(row and row[0])
            return self._held
        except (psycopg.Error, DatabaseUnavailable):
            self.release()
            return False

    def release(self) -> None:
        """Give the lock up: end the session (which releases it, even on a half-dead connection)."""
        if self._raw is not None:
            with contextlib.suppress(psycopg.Error):
                if self._held and not self._raw.broken:
                    # Unlock first: the server ends a closed session a moment later, and a
                    # worker trying meanwhile would still find the lock taken.
                    self._raw.execute("SELECT pg_advisory_unlock(%s)", [self.key])
                self._raw.close()
            self._raw = None
        self._held = False


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
        conn = self.conn
        outside_transaction = not conn.in_transaction
        try:
            try:
                return conn.execute(sql, params)
            except psycopg.Error:
                if not outside_transaction or not (conn.raw.broken or conn.raw.closed):
                    raise
            # The server ended this session (it restarted): the statement never ran, so it
            # runs once more on a new session instead of failing one request per thread.
            return self.conn.execute(sql, params)
        except psycopg.Error as e:
            if is_unavailable(e):
                raise DatabaseUnavailable(first_line(e)) from e
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

    def leader_lock(self, name: str) -> LeaderLock:
        """The lock the process leading `name` holds while it leads, on a connection of its own."""
        return LeaderLock(self.path, f"attendance-worker:leader:{name}", lock_timeout=self.lock_timeout)

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
                raise DatabaseUnavailable(first_line(e)) from e
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

    # -- copy-db (store/copy.py): what differs between the stores when moving whole tables --

    def data_tables(self) -> list[str]:
        """The tables holding the service's data (not the migrations' bookkeeping)."""
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_type = 'BASE TABLE' AND table_name != 'schema_migrations' ORDER BY table_name"
        )
        return [row[0] for row in self.execute(sql)]

    def table_columns(self, table: str) -> list[str]:
        """The columns of `table`, in their order."""
        sql = (
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? ORDER BY ordinal_position"
        )
        return [row[0] for row in self.execute(sql, [table])]

    def stream(self, sql: str, batch_size: int) -> Iterator[list[tuple]]:
        """The rows of `sql` in lists of at most `batch_size`, through a server-side cursor.

        Call it inside a transaction (`read_snapshot`): a client-side cursor would hold a
        whole table of webhook bodies in memory."""
        with self.conn.raw.cursor(name=f"stream_{next(_stream_numbers)}") as cursor:
            cursor.execute(translate(sql))
            while batch := cursor.fetchmany(batch_size):
                yield batch

    def defer_foreign_keys(self, conn: PgConnection) -> None:
        """Check foreign keys (all DEFERRABLE) at the commit of the open transaction."""
        conn.execute("SET CONSTRAINTS ALL DEFERRED")

    def insert_rows(self, conn: PgConnection, table: str, columns: list[str], rows: list[tuple]) -> None:
        """Insert `rows` (values of `columns`, ids included) into `table` with COPY, inside the open transaction."""
        names = ", ".join(f'"{c}"' for c in columns)
        with conn.raw.cursor() as cursor, cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)

    def after_insert_rows(self, conn: PgConnection, table: str) -> None:
        """Move `table`'s identity sequences past the ids COPY wrote, so the next insert follows them."""
        identities = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ? AND is_identity = 'YES'",
            [table],
        ).fetchall()
        for (column,) in identities:
            conn.execute(
                f'SELECT setval(pg_get_serial_sequence(?, ?), coalesce(max("{column}"), 0) + 1, false) FROM "{table}"',
                [table, column],
            )


def open_postgres(
    url: str, *, lock_timeout: float = 2.0, read_only: bool = False, must_exist: bool = False
) -> PostgresStore:
    """Connect to the PostgreSQL database at `url`; DatabaseUnavailable when it does not answer.

    `read_only` makes every transaction of the session read-only (verify and exports).
    `must_exist` (read commands) refuses a database without the worker's tables, as SQLite's
    store refuses a missing file: a mistyped URL is an error, not a new empty database.
    """
    store = PostgresStore(url, lock_timeout=lock_timeout)
    try:
        if read_only:
            store.execute("SET default_transaction_read_only = on")
        if must_exist and store.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
            raise DatabaseOpenError(f"{redact(url)}: {NO_TABLES} (serve, schedule or copy-db create them)")
        return store
    except psycopg.Error as e:
        store.close()
        raise DatabaseOpenError(f"cannot use database {redact(url)}: {first_line(e)}") from None
    except DatabaseOpenError:
        store.close()
        raise
