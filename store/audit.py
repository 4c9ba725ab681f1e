"""Verifying the hash chain of raw records (store/evidence.py), and reading its head.

The chain proves nothing was changed inside the log; a head recorded elsewhere (a bundle's
MANIFEST, a printed `verify`) also proves nothing was cut off (docs/internals.md)."""

from __future__ import annotations

import multiprocessing
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from store.db import SQLiteStore, Store, check_database_file, stream_rows
from store.evidence import GENESIS, chain_hash, content_hash
from store.postgres import is_postgres_url, open_postgres


class ChainError(Exception):
    "The hash chain does not match the stored records"

    def __init__(self, message: str, *, record_id: int | None = None):
        super().__init__(message)
        self.record_id = record_id

    def __reduce__(self):
        # Raised in a worker process, it crosses back pickled: keep the record id.
        return (_rebuild_chain_error, (type(self), str(self), self.record_id))


class ContentMismatch(ChainError):
    "A record's body does not hash to its stored SHA-256"


class LinkMismatch(ChainError):
    "A record's chain hash does not follow from the record before it"


class HeadNotFound(ChainError):
    "A chain head recorded earlier is no longer in the chain"


def _rebuild_chain_error(cls: type[ChainError], message: str, record_id: int | None) -> ChainError:
    return cls(message, record_id=record_id)


@dataclass(frozen=True)
class ChainHead:
    """The state of the chain: how many records, the last one, and its chain hash."""

    count: int
    record_id: int | None
    chain_hash: str


def _describe(row: tuple) -> str:
    record_id, source, received_at = row[0], row[1], row[2]
    return f"record {record_id} ({source}, received {received_at})"


def _link_problem(row: tuple, previous_id: int | None) -> str:
    """Why a link may have broken, with the one hint the ids give for sure (a gap)."""
    record_id = row[0]
    after = "the genesis" if previous_id is None else f"record {previous_id}"
    message = f"{_describe(row)}: chain hash does not follow from {after}"
    first_missing, last_missing = (previous_id or 0) + 1, record_id - 1
    if first_missing <= last_missing:
        gap = f"record {last_missing}" if first_missing == last_missing else f"records {first_missing}-{last_missing}"
        return f"{message}; {gap} missing (deleted?)"
    return f"{message}: a record was inserted, deleted, edited or moved at or just before it"


def _verify_rows(
    rows, previous_hash: str, previous_id: int | None, expect_head: str | None
) -> tuple[int, int | None, str, bool]:
    """Check rows (id order) following a record with `previous_hash`; (count, last id, last hash, head seen)."""
    count, head_seen = 0, False
    for row in rows:
        record_id, _, received_at, body, stored_sha, stored_chain = row
        if body.__class__ is not bytes:  # edited by hand into TEXT: hash what it now says
            body = str(body).encode("utf-8", "surrogatepass")
        if content_hash(body) != stored_sha:
            raise ContentMismatch(f"{_describe(row)}: body does not match its SHA-256 (edited?)", record_id=record_id)
        if chain_hash(previous_hash, stored_sha, received_at) != stored_chain:
            raise LinkMismatch(_link_problem(row, previous_id), record_id=record_id)
        if stored_chain == expect_head:
            head_seen = True
        previous_hash, previous_id = stored_chain, record_id
        count += 1
    return count, previous_id, previous_hash, head_seen


_ROWS = "SELECT id, source, received_at, body, sha256, chain_hash FROM raw_records"


def _head_not_found(expect_head: str, count: int, head: str) -> HeadNotFound:
    return HeadNotFound(
        f"chain head {expect_head} is not in the chain (checked {count} records, head now {head}): "
        "records up to it were changed or removed"
    )


def verify_chain(db: Store, *, expect_head: str | None = None) -> ChainHead:
    """Recompute every content hash and chain link in id order; raise ChainError at the first mismatch.

    With `expect_head`, also require that chain hash to appear in the chain (records up to it
    were neither changed nor removed since it was recorded).
    """
    # One SELECT is one read snapshot: writers may append meanwhile, the check sees a fixed log.
    rows = stream_rows(db.conn, _ROWS + " ORDER BY id")
    try:
        count, last_id, last_hash, head_seen = _verify_rows(rows, GENESIS, None, expect_head)
    finally:
        rows.close()
    if expect_head is not None and not head_seen:
        raise _head_not_found(expect_head, count, last_hash)
    return ChainHead(count, last_id, last_hash)


def verify_range(
    conn, first_id: int, last_id: int, expect_head: str | None = None
) -> tuple[int, int | None, str, bool]:
    """Check the records with ids first_id..last_id, linking the first to the record stored before it.

    Every link is checked against the *stored* chain hash of the record before it, so
    ranges checked apart, in any order, prove exactly what one pass in id order proves.
    """
    before = conn.execute(
        "SELECT id, chain_hash FROM raw_records WHERE id < ? ORDER BY id DESC LIMIT 1", (first_id,)
    ).fetchone()
    previous_id, previous_hash = before if before else (None, GENESIS)
    rows = stream_rows(conn, _ROWS + " WHERE id BETWEEN ? AND ? ORDER BY id", (first_id, last_id))
    try:
        return _verify_rows(rows, previous_hash, previous_id, expect_head)
    finally:
        rows.close()


# Ids per range checked by one worker process.
VERIFY_SPAN = 50_000
_worker_dbs: dict[str, Store] = {}


def _verify_span(span: tuple[str, int, int, str | None]) -> tuple[int, int | None, str, bool]:
    path, first_id, last_id, expect_head = span
    db = _worker_dbs.get(path)
    if db is None:
        db = _worker_dbs[path] = open_readonly(path)
    return verify_range(db.conn, first_id, last_id, expect_head)


def verify_file(path: str, *, expect_head: str | None = None, workers: int = 1) -> ChainHead:
    """verify_chain over the database file at `path`, in id ranges checked by `workers` processes.

    Raises the ChainError of the first record, in id order, that does not match.
    """
    db = open_readonly(path)
    try:
        low, high = db.execute("SELECT min(id), max(id) FROM raw_records").fetchone()
        if workers <= 1 or low is None or high - low < VERIFY_SPAN:
            return verify_chain(db, expect_head=expect_head)
    finally:
        db.close()
    spans = [
        (path, first, min(first + VERIFY_SPAN - 1, high), expect_head) for first in range(low, high + 1, VERIFY_SPAN)
    ]
    count, head_seen = 0, False
    last: tuple[int | None, str] = (None, GENESIS)
    # Not fork: a process with threads (pools, the group commit) can fork a child that holds a
    # lock no thread will release, and the pool's exit then waits for ever (a CI run hung).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with context.Pool(workers) as pool:
        # imap yields in id order and raises where a range failed: the first mismatch wins.
        for n, last_id, last_hash, seen in pool.imap(_verify_span, spans):
            count += n
            head_seen |= seen
            if last_id is not None:
                last = (last_id, last_hash)
    if expect_head is not None and not head_seen:
        raise _head_not_found(expect_head, count, last[1])
    return ChainHead(count, last[0], last[1])


def chain_head(conn) -> ChainHead:
    """The current head of the chain, read with `conn` (inside the caller's read snapshot, if any)."""
    row = conn.execute("SELECT id, chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return ChainHead(0, None, GENESIS)
    count = conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
    return ChainHead(count, row[0], row[1])


def open_readonly(path: str) -> Store:
    """Open a database for reading only (verify and exports never write, even by accident)."""
    if is_postgres_url(path):
        return open_postgres(path, read_only=True, must_exist=True)
    check_database_file(path, must_exist=True, writable=False)
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    return SQLiteStore(
        sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False), path=path, lock_timeout=2.0
    )
