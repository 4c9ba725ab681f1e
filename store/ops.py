"""SQL behind /metrics, the alerts and `doctor` (issue 18): what the service is doing now.

Reads are cheap enough for every scrape: each uses an index or the rowid. The alert rows
(`ops_alerts`) are written by the worker's alert job only.
"""

from __future__ import annotations

from typing import Any

from store.db import Store, durable_write, query_one
from store.events import NORMALIZE_CURSOR, get_state


def live_meetings(db: Store, *, since: str) -> list[dict[str, Any]]:
    """Instances started, not ended, with people in them, and when their last delivery came.

    `since` (ISO time) leaves out instances whose start is older: an end event Zoom never
    sent must not keep a meeting "live" for ever.
    """
    rows = db.execute(
        """
        SELECT i.instance_uuid, i.meeting_id, i.kind, i.topic, a.in_meeting,
            (SELECT r.received_at FROM raw_records r WHERE r.id =
                (SELECT max(id) FROM raw_records WHERE meeting_uuid = i.instance_uuid)) AS last_delivery_at
        FROM instances i JOIN attendance_instances a ON a.instance_uuid = i.instance_uuid
        WHERE i.started_event_ts IS NOT NULL AND i.ended_event_ts IS NULL AND a.in_meeting > 0
            AND coalesce(i.start_time, i.first_seen_at) >= ?
        ORDER BY i.instance_uuid
        """,
        [since],
    ).fetchall()
    keys = ("instance_uuid", "meeting_id", "kind", "topic", "in_meeting", "last_delivery_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def oldest_unnormalized_delivery(db: Store) -> str | None:
    """received_at of the oldest webhook record normalization has not reached, or None."""
    cursor = int(get_state(db, NORMALIZE_CURSOR, "0") or 0)
    # `source || ''`: stay on the id range (store/events.py pending_deliveries says why).
    return query_one(
        db,
        "SELECT received_at FROM raw_records WHERE id > ? AND source || '' = 'webhook' ORDER BY id LIMIT 1",
        [cursor],
    )


def recent_fetch_statuses(db: Store, limit: int) -> list[str]:
    """Statuses of the last `limit` finished report fetches, newest first."""
    rows = db.execute(
        "SELECT status FROM report_fetches WHERE status != 'running' ORDER BY id DESC LIMIT ?", [limit]
    ).fetchall()
    return [r[0] for r in rows]


def fetch_counts(db: Store) -> dict[str, int]:
    """Report fetches by status, ever."""
    return dict(db.execute("SELECT status, count(*) FROM report_fetches GROUP BY status").fetchall())


def report_api_calls_since(db: Store, since: str) -> int:
    """API calls made by report fetches started at or after `since` (ISO time)."""
    return int(query_one(db, "SELECT coalesce(sum(api_calls), 0) FROM report_fetches WHERE started_at >= ?", [since]))


def last_refresh(db: Store) -> tuple[str, float] | None:
    """(refreshed_at, seconds) of the latest derived-table refresh, or None."""
    row = db.execute(
        "SELECT refreshed_at, seconds FROM derived_refreshes ORDER BY refreshed_at DESC LIMIT 1"
    ).fetchone()
    return (row[0], float(row[1] or 0.0)) if row else None


# -- alerts ----------------------------------------------------------------------------------

ALERT_COLUMNS = (
    "key",
    "alert",
    "subject",
    "message",
    "raised_at",
    "cleared_at",
    "notified_raised_at",
    "notified_cleared_at",
    "updated_at",
)


def alert_rows(db: Store, *, active_only: bool = False) -> list[dict[str, Any]]:
    """Stored alerts (only those whose condition holds, with `active_only`), oldest first."""
    where = " WHERE cleared_at IS NULL" if active_only else ""
    rows = db.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM ops_alerts{where} ORDER BY raised_at, key").fetchall()
    return [dict(zip(ALERT_COLUMNS, row, strict=True)) for row in rows]


def raise_alert(db, key: str, *, alert: str, subject: str | None, message: str, now: str) -> None:
    """Start a new incident for `key` (forgetting a cleared one's notices)."""
    with durable_write(db) as conn:
        conn.execute(
            "INSERT INTO ops_alerts (key, alert, subject, message, raised_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET alert = excluded.alert, subject = excluded.subject, "
            "message = excluded.message, raised_at = excluded.raised_at, cleared_at = NULL, "
            "notified_raised_at = NULL, notified_cleared_at = NULL, updated_at = excluded.updated_at",
            (key, alert, subject, message, now, now),
        )


def update_alert_message(db, key: str, message: str, now: str) -> None:
    """Keep an active alert's text current (the silence grows, the lag changes)."""
    with durable_write(db, sync=False) as conn:
        conn.execute("UPDATE ops_alerts SET message = ?, updated_at = ? WHERE key = ?", (message, now, key))


def clear_alert(db, key: str, *, now: str) -> None:
    """End the incident of `key`."""
    with durable_write(db) as conn:
        conn.execute("UPDATE ops_alerts SET cleared_at = ?, updated_at = ? WHERE key = ?", (now, now, key))


def mark_notified(db, key: str, *, column: str, now: str) -> None:
    """Record that the hook took this alert's notice (`notified_raised_at` or `notified_cleared_at`)."""
    if column not in ("notified_raised_at", "notified_cleared_at"):
        raise ValueError(column)
    with durable_write(db) as conn:
        conn.execute(f"UPDATE ops_alerts SET {column} = ?, updated_at = ? WHERE key = ?", (now, now, key))
