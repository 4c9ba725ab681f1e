"""Raw evidence: every webhook delivery and every fetched report page, hash-chained.

Each record gets its id and chain hash (`chain_hash`, the one copy of the formula) in the
same write transaction, under the cross-process write lock, so the chain stays linear."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

from store.db import Store, durable_write, insert_sql

GENESIS = "0" * 64


def utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds and `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_hash(body: bytes) -> str:
    """Hex SHA-256 of a record's raw bytes."""
    return hashlib.sha256(body).hexdigest()


def chain_hash(previous: str, sha256: str, received_at: str) -> str:
    """The chain hash of a record given the previous record's chain hash."""
    return hashlib.sha256(f"{previous}:{sha256}:{received_at}".encode()).hexdigest()


class FetchedPage(Protocol):
    """What the store keeps of a fetched REST page: its exact bytes and the URL that gave them."""

    @property
    def url(self) -> str: ...

    @property
    def body(self) -> bytes: ...


@dataclass(frozen=True)
class RawPage:
    """A `FetchedPage` made by hand: benchmarks and tests that store pages without a client."""

    url: str
    body: bytes


@dataclass(frozen=True)
class StoredRecord:
    id: int
    created: bool
    sha256: str


def _append(conn, source: str, body: bytes, sha256: str, received_at: str, columns: dict) -> StoredRecord:
    existing = conn.execute("SELECT id FROM raw_records WHERE source = ? AND sha256 = ?", (source, sha256)).fetchone()
    if existing:
        return StoredRecord(existing[0], False, sha256)
    last_id, previous = conn.execute(_HEAD_SQL).fetchone() or (0, GENESIS)
    chained = chain_hash(previous, sha256, received_at)
    # The id is given, as append_deliveries gives it: under the write lock it is the head's
    # plus one, and no database's id sequence has to agree with ids given elsewhere.
    record_id = last_id + 1
    names = ["id", "source", "received_at", "body", "sha256", "chain_hash", *columns]
    conn.execute(
        f"INSERT INTO raw_records ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        (record_id, source, received_at, body, sha256, chained, *columns.values()),
    )
    return StoredRecord(record_id, True, sha256)


class Delivery(NamedTuple):
    """One webhook delivery: the raw body and the headers kept with it."""

    body: bytes
    timestamp: str | None
    signature: str | None
    request_id: str | None = None
    tracking_id: str | None = None
    stale_timestamp: bool = False
    received_at: str | None = None


def store_delivery(
    db: Store,
    body: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    request_id: str | None = None,
    tracking_id: str | None = None,
    stale_timestamp: bool = False,
    received_at: str | None = None,
) -> StoredRecord:
    """Store one webhook delivery durably (on disk when this returns); idempotent by body."""
    delivery = Delivery(body, timestamp, signature, request_id, tracking_id, stale_timestamp, received_at)
    with durable_write(db) as conn:
        return append_deliveries(conn, [delivery])[0]


_DELIVERY_COLUMNS = (
    "id",
    "source",
    "received_at",
    "body",
    "sha256",
    "chain_hash",
    "zm_request_timestamp",
    "zm_signature",
    "zm_request_id",
    "zm_trackingid",
    "stale_timestamp",
)
_HEAD_SQL = "SELECT id, chain_hash FROM raw_records ORDER BY id DESC LIMIT 1"


def append_deliveries(conn, deliveries: list[Delivery]) -> list[StoredRecord]:
    """Append deliveries in order inside the caller's `durable_write` transaction.

    Idempotent by body: a delivery stored before (or earlier in the list) is not stored
    again and comes back with `created=False` and the first copy's id.
    """
    # A few statements per batch, whatever its size (spool imports bring thousands of rows,
    # issue 6): the chain head, a dedupe lookup per 500 hashes, a multi-row INSERT per 256
    # rows. Under the write lock nobody else appends meanwhile, so the ids are known in advance.
    head = conn.execute(_HEAD_SQL).fetchone()
    last_id, previous = head if head else (0, GENESIS)
    hashes = [content_hash(d.body) for d in deliveries]
    known: dict[str, int] = {}
    for start in range(0, len(hashes), 500):  # SQLite's limit on bound parameters
        chunk = hashes[start : start + 500]
        sql = (
            f"SELECT sha256, id FROM raw_records WHERE source = 'webhook' AND sha256 IN ({','.join('?' * len(chunk))})"
        )
        known.update(conn.execute(sql, chunk).fetchall())
    now = utc_now()
    records: list[StoredRecord] = []
    rows: list[object] = []
    for d, sha256 in zip(deliveries, hashes, strict=True):
        if sha256 in known:
            records.append(StoredRecord(known[sha256], False, sha256))
            continue
        received_at = d.received_at or now
        previous = chain_hash(previous, sha256, received_at)
        last_id += 1
        known[sha256] = last_id
        records.append(StoredRecord(last_id, True, sha256))
        rows.extend((last_id, "webhook", received_at, d.body, sha256, previous, d.timestamp, d.signature))
        rows.extend((d.request_id, d.tracking_id, int(d.stale_timestamp)))
    # One statement per chunk, not per row: each is a round trip through the GIL, which the
    # importing web process's request threads contend for.
    width = len(_DELIVERY_COLUMNS)
    per_statement = _ROWS_PER_INSERT * width
    for start in range(0, len(rows), per_statement):
        values = rows[start : start + per_statement]
        conn.execute(insert_sql("raw_records", _DELIVERY_COLUMNS, len(values) // width), values)
    return records


_ROWS_PER_INSERT = 256  # 2,816 bound parameters, well under SQLite's 32,766


def append_report_page(
    conn, page: FetchedPage, *, meeting_uuid: str | None, received_at: str | None = None, meeting_id: str | None = None
) -> StoredRecord:
    """Append one fetched report page inside the caller's `durable_write` transaction."""
    columns = {"url": page.url, "meeting_uuid": meeting_uuid}
    if meeting_id is not None:  # pages of a meeting rather than an instance (poll definitions)
        columns["meeting_id"] = meeting_id
    return _append(conn, "report", page.body, content_hash(page.body), received_at or utc_now(), columns)


def append_import(conn, body: bytes, *, url: str, meeting_id: str, received_at: str | None = None) -> StoredRecord:
    """Append an imported file (a registration list) inside the caller's `durable_write` transaction."""
    return _append(
        conn, "import", body, content_hash(body), received_at or utc_now(), {"url": url, "meeting_id": meeting_id}
    )
