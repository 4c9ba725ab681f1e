"""Verifying the hash chain of raw records (store/evidence.py), and reading its head.

The chain proves that nothing was edited, inserted, deleted or reordered *inside* the log:
each record's `chain_hash` covers the previous record's. What it cannot prove alone is that
the newest records were not cut off (the log then just ends earlier), nor that someone who
recomputed every hash after an edit did not rewrite history. A head recorded elsewhere
(an evidence bundle's MANIFEST, a printed `verify` result) closes both gaps: `verify_chain(
db, expect_head=...)` fails unless that exact head is still in the chain.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from store.evidence import GENESIS

# Rows per fetch: large enough that SQLite's per-call cost vanishes, small enough to stay flat.
_FETCH = 2000


class ChainError(Exception):
    "The hash chain does not match the stored records"

    def __init__(self, message: str, *, record_id: int | None = None):
        super().__init__(message)
        self.record_id = record_id


class ContentMismatch(ChainError):
    "A record's body does not hash to its stored SHA-256"


class LinkMismatch(ChainError):
    "A record's chain hash does not follow from the record before it"


class HeadNotFound(ChainError):
    "A chain head recorded earlier is no longer in the chain"


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
    expected_previous = record_id - 1
    if previous_id is not None and previous_id < expected_previous:
        gap = (
            f"record {expected_previous}"
            if previous_id + 1 == expected_previous
            else f"records {previous_id + 1}-{expected_previous}"
        )
        return f"{message}; {gap} missing (deleted?)"
    return f"{message}: a record was inserted, deleted, edited or moved at or just before it"


def verify_chain(db: sqlite_utils.Database, *, expect_head: str | None = None) -> ChainHead:
    """Recompute every content hash and chain link in id order; raise ChainError at the first mismatch.

    With `expect_head`, also require that chain hash to appear in the chain (records up to it
    were neither changed nor removed since it was recorded).
    """
    # One SELECT is one read snapshot: writers may append meanwhile, the check sees a fixed log.
    cursor = db.conn.execute("SELECT id, source, received_at, body, sha256, chain_hash FROM raw_records ORDER BY id")
    previous_hash, previous_id, count = GENESIS, None, 0
    head_seen = expect_head is None
    sha256 = hashlib.sha256
    try:
        while rows := cursor.fetchmany(_FETCH):
            for row in rows:
                record_id, _, received_at, body, stored_sha, stored_chain = row
                if body.__class__ is not bytes:  # edited by hand into TEXT: hash what it now says
                    body = str(body).encode("utf-8", "surrogatepass")
                if sha256(body).hexdigest() != stored_sha:
                    raise ContentMismatch(
                        f"{_describe(row)}: body does not match its SHA-256 (edited?)", record_id=record_id
                    )
                link = sha256(f"{previous_hash}:{stored_sha}:{received_at}".encode()).hexdigest()
                if link != stored_chain:
                    raise LinkMismatch(_link_problem(row, previous_id), record_id=record_id)
                if not head_seen and stored_chain == expect_head:
                    head_seen = True
                previous_hash, previous_id = stored_chain, record_id
                count += 1
    finally:
        cursor.close()
    if not head_seen:
        raise HeadNotFound(
            f"chain head {expect_head} is not in the chain (checked {count} records, head now {previous_hash}): "
            "records up to it were changed or removed"
        )
    return ChainHead(count, previous_id, previous_hash)


def chain_head(conn) -> ChainHead:
    """The current head of the chain, read with `conn` (inside the caller's read snapshot, if any)."""
    row = conn.execute("SELECT id, chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return ChainHead(0, None, GENESIS)
    count = conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
    return ChainHead(count, row[0], row[1])


def open_readonly(path: str) -> sqlite_utils.Database:
    """Open a database file for reading only (verify and exports never write, even by accident)."""
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    db = sqlite_utils.Database(sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False))
    db.path = path  # type: ignore[attr-defined]
    return db
