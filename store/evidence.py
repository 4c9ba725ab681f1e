"""Raw evidence: every webhook delivery and every fetched report page, hash-chained.

Each record's `chain_hash` is SHA-256 over the previous record's chain hash, the
record's own content hash and its received time. Records get their id and chain hash
inside the same write transaction, under the cross-process write lock, so the chain
stays linear however many gunicorn workers write at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlite_utils

from store.db import durable_write

GENESIS = "0" * 64


def utc_now() -> str:
    """The current UTC time as ISO 8601 with microseconds and `Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_hash(body: bytes) -> str:
    """Hex SHA-256 of a record's raw bytes."""
    return hashlib.sha256(body).hexdigest()


def chain_hash(previous: str, sha256: str, received_at: str) -> str:
    """The chain hash of a record given the previous record's chain hash."""
    return hashlib.sha256(f"{previous}:{sha256}:{received_at}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredRecord:
    id: int
    created: bool
    sha256: str


def _append(conn, source: str, body: bytes, sha256: str, received_at: str, columns: dict) -> StoredRecord:
    existing = conn.execute(
        "SELECT id FROM raw_records WHERE source = ? AND sha256 = ?", (source, sha256)
    ).fetchone()
    if existing:
        return StoredRecord(existing[0], False, sha256)
    last = conn.execute("SELECT chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    chained = chain_hash(last[0] if last else GENESIS, sha256, received_at)
    names = ["source", "received_at", "body", "sha256", "chain_hash", *columns]
    cursor = conn.execute(
        f"INSERT INTO raw_records ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        (source, received_at, body, sha256, chained, *columns.values()),
    )
    return StoredRecord(cursor.lastrowid, True, sha256)


def store_delivery(
    db: sqlite_utils.Database,
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
    sha256 = content_hash(body)
    columns = {
        "zm_request_timestamp": timestamp,
        "zm_signature": signature,
        "zm_request_id": request_id,
        "zm_trackingid": tracking_id,
        "stale_timestamp": int(stale_timestamp),
    }
    with durable_write(db) as conn:
        return _append(conn, "webhook", body, sha256, received_at or utc_now(), columns)


def append_report_page(conn, body: bytes, *, url: str, meeting_uuid: str | None, received_at: str | None = None) -> StoredRecord:
    """Append one fetched report page inside the caller's `durable_write` transaction."""
    return _append(
        conn,
        "report",
        body,
        content_hash(body),
        received_at or utc_now(),
        {"url": url, "meeting_uuid": meeting_uuid},
    )
