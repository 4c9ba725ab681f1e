"""Handing out raw records for the raw join log (export-raw, evidence, /api/raw-events).

Rows leave as plain tuples (the columns `raw_records` names), streamed from one SELECT, so
memory stays flat and each export reads one consistent snapshot. Zoom's shapes inside the
bodies are flattened in integrations/zoom/rawlog.py, not here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from store.db import stream_rows
from store.events import NORMALIZE_CURSOR

_SELECT = f"""
SELECT r.id, r.source, r.received_at, r.body, r.sha256, r.chain_hash, r.stale_timestamp, r.url,
  CASE WHEN r.source = 'report'
    THEN coalesce(r.meeting_id, (SELECT i.meeting_id FROM instances i WHERE i.instance_uuid = r.meeting_uuid))
    ELSE r.meeting_id END,
  r.meeting_uuid,
  CASE WHEN r.source = 'webhook'
    AND r.id > coalesce((SELECT CAST(value AS INTEGER) FROM state WHERE key = '{NORMALIZE_CURSOR}'), 0)
    THEN 1 ELSE 0 END
FROM raw_records r
"""

# A meeting is an instance uuid or a meeting number (all of its instances). Deliveries not
# normalized yet are included for the caller to test against their parsed body. Every term
# is indexed, so SQLite looks each up instead of scanning the log.
_MEETING = f"""(
  r.meeting_uuid = :meeting
  OR r.meeting_id = :meeting
  OR r.meeting_uuid IN (SELECT instance_uuid FROM instances WHERE meeting_id = :meeting)
  OR (r.source = 'webhook' AND r.id > coalesce((SELECT CAST(value AS INTEGER) FROM state WHERE key = '{NORMALIZE_CURSOR}'), 0))
)"""


def _filters(
    meeting: str | None, since: str | None, until: str | None, first_id: int | None, last_id: int | None
) -> tuple[str, dict[str, Any]]:
    where: list[str] = []
    if meeting is not None:
        where.append(_MEETING)
    if since is not None:
        where.append("r.received_at >= :since")
    if until is not None:
        where.append("r.received_at < :until")
    if first_id is not None:
        where.append("r.id >= :first_id")
    if last_id is not None:
        where.append("r.id <= :last_id")
    params = {"meeting": meeting, "since": since, "until": until, "first_id": first_id, "last_id": last_id}
    return (" WHERE " + " AND ".join(where) if where else ""), params


def raw_records(
    conn,
    *,
    meeting: str | None = None,
    since: str | None = None,
    until: str | None = None,
    first_id: int | None = None,
    last_id: int | None = None,
) -> Iterator[tuple]:
    """Raw records in id order, as tuples.

    Columns: id, source, received_at, body, sha256, chain_hash, stale_timestamp, url,
    meeting_id, meeting_uuid, pending (a webhook not normalized yet: its meeting columns are
    still empty).

    `since` (inclusive) and `until` (exclusive) compare with `received_at` (canonical UTC ISO);
    `first_id` and `last_id` (both inclusive) bound the record ids.
    """
    where, params = _filters(meeting, since, until, first_id, last_id)
    yield from stream_rows(conn, _SELECT + where + " ORDER BY r.id", params)


def meeting_stored(conn, meeting: str) -> bool:
    """Whether a raw record, an instance or a tracked meeting names `meeting` (a number or an
    instance UUID); deliveries not normalized yet are not looked at (the caller parses them)."""
    row = conn.execute(
        """SELECT EXISTS (SELECT 1 FROM raw_records WHERE meeting_uuid = :meeting)
          OR EXISTS (SELECT 1 FROM raw_records WHERE meeting_id = :meeting)
          OR EXISTS (SELECT 1 FROM instances WHERE instance_uuid = :meeting OR meeting_id = :meeting)
          OR EXISTS (SELECT 1 FROM tracked_meetings WHERE meeting_id = :meeting)""",
        {"meeting": meeting},
    ).fetchone()
    return bool(row[0])


def record_ids(
    conn, *, meeting: str | None = None, since: str | None = None, until: str | None = None
) -> Iterator[int]:
    """The ids of the records `raw_records` would give, without reading the records."""
    where, params = _filters(meeting, since, until, None, None)
    cursor = conn.execute("SELECT r.id FROM raw_records r" + where + " ORDER BY r.id", params)
    try:
        for (record_id,) in cursor:
            yield record_id
    finally:
        cursor.close()


REGISTRANT_COLUMNS = (
    "meeting_id",
    "registrant_id",
    "email",
    "first_name",
    "last_name",
    "name",
    "status",
    "create_time",
    "raw_id",
    "fetched_at",
)


def registrants(conn, meeting_id: str) -> Iterator[dict[str, Any]]:
    """The stored registrants of a meeting or webinar, by registrant id."""
    cursor = conn.execute(
        f"SELECT {', '.join(REGISTRANT_COLUMNS)} FROM registrants WHERE meeting_id = ? ORDER BY registrant_id",
        (meeting_id,),
    )
    try:
        for row in cursor:
            yield dict(zip(REGISTRANT_COLUMNS, row, strict=True))
    finally:
        cursor.close()


def evidence_pages(conn, *, instance_uuid: str, meeting_id: str | None) -> Iterator[tuple]:
    """Stored report pages behind an instance: its participant report pages, and the registrant
    pages its meeting's registrants were last seen in. Tuples: id, received_at, url, body, sha256, chain_hash."""
    cursor = conn.execute(
        "SELECT id, received_at, url, body, sha256, chain_hash FROM raw_records WHERE source = 'report' AND "
        "(meeting_uuid = :uuid OR id IN (SELECT raw_id FROM registrants WHERE meeting_id = :meeting_id)) ORDER BY id",
        {"uuid": instance_uuid, "meeting_id": meeting_id},
    )
    try:
        yield from cursor
    finally:
        cursor.close()
