"""Normalized webhook data: participant events, instance state, tracked meetings.

Rows arrive as plain dicts from integrations/zoom/webhooks.py. Writes are idempotent:
re-normalizing a delivery replaces its own rows and nothing else, and instance state
only moves forward in event time, so a late, older event never overwrites newer state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from store.db import Store, durable_write, query_one
from store.evidence import utc_now

NORMALIZE_CURSOR = "normalize_cursor"


@dataclass
class NormalizedDelivery:
    """What normalization learned from one raw webhook record."""

    raw_id: int
    event: str | None = None
    meeting_id: str | None = None
    meeting_uuid: str | None = None
    parse_error: str | None = None
    participant_rows: list[dict[str, Any]] = field(default_factory=list)
    instance: dict[str, Any] | None = None


def get_state(db: Store, key: str, default: str | None = None) -> str | None:
    """A value from the key/value `state` table."""
    value = query_one(db, "SELECT value FROM state WHERE key = ?", [key])
    return default if value is None else value


def set_state(conn, key: str, value: str) -> None:
    """Set a `state` value inside the caller's transaction."""
    conn.execute(
        "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def pending_deliveries(db: Store, *, limit: int = 1000) -> list[tuple[int, bytes]]:
    """Webhook records not yet normalized, oldest first."""
    cursor = int(get_state(db, NORMALIZE_CURSOR, "0") or 0)
    # `source || ''` keeps SQLite on the id range: the UNIQUE(source, sha256) index would
    # visit every webhook ever stored and sort them (14 ms at 120,000 records, each second).
    # (SQLite's own idiom, `+source`, is not valid on PostgreSQL's text.)
    return db.execute(
        "SELECT id, body FROM raw_records WHERE id > ? AND source || '' = 'webhook' ORDER BY id LIMIT ?",
        [cursor, limit],
    ).fetchall()


def ensure_instance(conn, uuid: str, meeting_id: str | None, kind: str | None, first_seen_at: str) -> None:
    """Add an instance row, or fill in its meeting number and kind where they are still unknown."""
    conn.execute(
        "INSERT INTO instances (instance_uuid, meeting_id, kind, first_seen_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (instance_uuid) DO UPDATE SET "
        "meeting_id = coalesce(instances.meeting_id, excluded.meeting_id), "
        "kind = coalesce(instances.kind, excluded.kind)",
        (uuid, meeting_id, kind, first_seen_at),
    )


def upsert_instance(conn, instance: dict[str, Any]) -> None:
    """Record what an event says about an instance; older events never overwrite newer ones."""
    uuid = instance["instance_uuid"]
    ensure_instance(conn, uuid, instance.get("meeting_id"), instance.get("kind"), utc_now())
    ts = instance.get("event_ts") or 0
    if instance.get("host_id"):
        conn.execute(
            "UPDATE instances SET host_id = coalesce(host_id, ?) WHERE instance_uuid = ?", (instance["host_id"], uuid)
        )
    if instance.get("topic"):
        conn.execute(
            "UPDATE instances SET topic = ?, topic_event_ts = ? WHERE instance_uuid = ? AND (topic_event_ts IS NULL OR topic_event_ts <= ?)",
            (instance["topic"], ts, uuid, ts),
        )
    if instance.get("started"):
        conn.execute(
            "UPDATE instances SET start_time = ?, started_event_ts = ? WHERE instance_uuid = ? AND (started_event_ts IS NULL OR started_event_ts <= ?)",
            (instance["start_time"], ts, uuid, ts),
        )
    elif instance.get("start_time"):
        conn.execute(
            "UPDATE instances SET start_time = coalesce(start_time, ?) WHERE instance_uuid = ?",
            (instance["start_time"], uuid),
        )
    if instance.get("ended"):
        conn.execute(
            "UPDATE instances SET end_time = ?, ended_event_ts = ? WHERE instance_uuid = ? AND (ended_event_ts IS NULL OR ended_event_ts <= ?)",
            (instance["end_time"], ts, uuid, ts),
        )


def track_meeting(conn, meeting_id: str, *, kind: str | None, topic: str | None, source: str) -> None:
    """Add a meeting or webinar to the set the poller fetches reports for (idempotent)."""
    conn.execute(
        "INSERT INTO tracked_meetings (meeting_id, kind, topic, source, added_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (meeting_id) DO UPDATE SET kind = coalesce(excluded.kind, tracked_meetings.kind), "
        "topic = coalesce(excluded.topic, tracked_meetings.topic)",
        (meeting_id, kind, topic, source, utc_now()),
    )


def save_normalized(db: Store, deliveries: Iterable[NormalizedDelivery]) -> list[str]:
    """Write normalized deliveries and advance the cursor; returns affected instance uuids."""
    affected: set[str] = set()
    last_id = None
    with durable_write(db) as conn:
        for d in deliveries:
            last_id = d.raw_id
            conn.execute(
                "UPDATE raw_records SET event = ?, meeting_id = ?, meeting_uuid = ?, parse_error = ? WHERE id = ?",
                (d.event, d.meeting_id, d.meeting_uuid, d.parse_error, d.raw_id),
            )
            conn.execute("DELETE FROM participant_events WHERE raw_id = ?", (d.raw_id,))
            for item, row in enumerate(d.participant_rows):
                names = ["raw_id", "item", *row]
                conn.execute(
                    f"INSERT INTO participant_events ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                    (d.raw_id, item, *row.values()),
                )
            if d.instance:
                upsert_instance(conn, d.instance)
                if d.instance.get("meeting_id"):
                    track_meeting(
                        conn,
                        d.instance["meeting_id"],
                        kind=d.instance.get("kind"),
                        topic=d.instance.get("topic"),
                        source="webhook",
                    )
            if d.meeting_uuid:
                affected.add(d.meeting_uuid)
        if last_id is not None:
            # Monotonic: a slower concurrent normalizer never moves the cursor back.
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN CAST(state.value AS INTEGER) > CAST(excluded.value AS INTEGER) "
                "THEN state.value ELSE excluded.value END",
                (NORMALIZE_CURSOR, str(last_id)),
            )
    return sorted(affected)


def problems(db: Store, *, limit: int = 100) -> list[dict[str, Any]]:
    """Deliveries operators should look at: unparseable bodies and stale timestamps."""
    return [
        dict(row)
        for row in db.query(
            "SELECT id, received_at, event, meeting_uuid, stale_timestamp, parse_error, zm_request_timestamp "
            "FROM raw_records WHERE source = 'webhook' AND (parse_error IS NOT NULL OR stale_timestamp = 1) "
            "ORDER BY id DESC LIMIT ?",
            [limit],
        )
    ]
