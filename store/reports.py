"""Report evidence from Zoom's REST API: fetched pages, report rows, registrants, and the
re-fetch schedule.

An instance's rows are those of its last complete fetch, so a partial fetch never
replaces a complete one; every write goes through `durable_write`."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from store.db import Store, chunks, durable_write, insert_sql, query_one
from store.events import ensure_instance, track_meeting
from store.evidence import FetchedPage, append_report_page, utc_now

# The fields of a participant report row as stored (integrations/zoom/reports.py hashes them).
REPORT_FIELDS = (
    "user_id",
    "participant_user_id",
    "registrant_id",
    "name",
    "user_email",
    "join_time",
    "leave_time",
    "duration",
    "status",
    "bo_mtg_id",
    "customer_key",
    "failover",
)
ROW_COLUMNS = ("row_hash", *REPORT_FIELDS)
REGISTRANT_COLUMNS = ("email", "first_name", "last_name", "name", "status", "create_time")
SCHEDULE_FIELDS = frozenset(
    (
        "stage",
        "due_at",
        "status",
        "attempts",
        "extra_fetches",
        "last_fetch_id",
        "last_error",
        "claimed_by",
        "claimed_until",
    )
)


def to_iso(moment: datetime) -> str:
    """A UTC datetime in the one text form stored times use (so text order is time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_iso(value: str) -> datetime:
    """A stored or Zoom UTC time as an aware datetime."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SavedPage:
    """What storing one fetched page did."""

    raw_id: int
    rows: int
    new_rows: int


@dataclass(frozen=True)
class FetchSummary:
    """One report fetch, as recorded in report_fetches."""

    fetch_id: int
    instance_uuid: str
    status: str
    pages: int
    rows: int
    new_rows: int
    zero_duration_rows: int
    restarts: int
    api_calls: int
    error: str | None


# -- report fetches -------------------------------------------------------------------------


def start_fetch(
    db: Store,
    instance_uuid: str,
    *,
    kind: str,
    meeting_id: str | None = None,
    stale_after_hours: float = 6,
) -> int:
    """Record a new running fetch of an instance's report; returns its id.

    Fetches of this instance still 'running' after `stale_after_hours` died with their
    process: they are marked failed and what they had seen is dropped.
    """
    moment = datetime.now(UTC)
    now = to_iso(moment)
    stale_before = to_iso(moment - timedelta(seconds=round(stale_after_hours * 3600)))
    with durable_write(db) as conn:
        stale = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM report_fetches WHERE instance_uuid = ? AND status = 'running' AND started_at < ?",
                (instance_uuid, stale_before),
            )
        ]
        for fetch_id in stale:
            conn.execute("DELETE FROM report_fetch_seen WHERE fetch_id = ?", (fetch_id,))
            conn.execute(
                "UPDATE report_fetches SET status = 'failed', error = 'abandoned (worker stopped)', completed_at = ? WHERE id = ?",
                (now, fetch_id),
            )
        return conn.execute(
            "INSERT INTO report_fetches (instance_uuid, kind, meeting_id, started_at) VALUES (?, ?, ?, ?) RETURNING id",
            (instance_uuid, kind, meeting_id, now),
        ).fetchone()[0]


def save_report_page(
    db: Store, fetch_id: int, instance_uuid: str, page: FetchedPage, rows: Sequence[Mapping[str, Any]]
) -> SavedPage:
    """Store a fetched page as evidence and upsert its rows (idempotent on row_hash)."""
    new_rows = 0
    with durable_write(db) as conn:
        record = append_report_page(conn, page, meeting_uuid=instance_uuid)
        # A few statements a page, not two a row: a round trip each on PostgreSQL.
        for chunk in chunks(rows):
            values = [v for row in chunk for v in (instance_uuid, record.id, *(row.get(c) for c in ROW_COLUMNS))]
            sql = insert_sql(
                "report_rows", ("instance_uuid", "raw_id", *ROW_COLUMNS), len(chunk), "ON CONFLICT DO NOTHING"
            )
            # rowcount, not total_changes: rows written by other areas' triggers are not ours.
            new_rows += conn.execute(sql, values).rowcount
            conn.execute(
                "INSERT INTO report_fetch_seen (fetch_id, row_id) SELECT ?, id FROM report_rows "
                f"WHERE instance_uuid = ? AND row_hash IN ({', '.join('?' * len(chunk))}) ON CONFLICT DO NOTHING",
                [fetch_id, instance_uuid, *(row["row_hash"] for row in chunk)],
            )
        conn.execute(
            "UPDATE report_fetches SET pages = pages + 1, new_rows = new_rows + ? WHERE id = ?", (new_rows, fetch_id)
        )
    return SavedPage(record.id, len(rows), new_rows)


def _update_schedule(conn, instance_uuid: str, fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - SCHEDULE_FIELDS
    if unknown:
        raise ValueError(f"not schedule fields: {sorted(unknown)}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    conn.execute(
        f"UPDATE report_schedule SET {assignments}, updated_at = ? WHERE instance_uuid = ?",
        (*fields.values(), utc_now(), instance_uuid),
    )


def _end_fetch(conn, fetch_id: int, now: str, schedule: Mapping[str, Any] | None, **fields: Any) -> tuple:
    """Record how a fetch ended (`fields` of report_fetches, rows seen) and the instance's next
    schedule; returns the fetch's (instance_uuid, kind, meeting_id)."""
    instance_uuid, kind, meeting_id = conn.execute(
        "SELECT instance_uuid, kind, meeting_id FROM report_fetches WHERE id = ?", (fetch_id,)
    ).fetchone()
    rows = conn.execute("SELECT count(*) FROM report_fetch_seen WHERE fetch_id = ?", (fetch_id,)).fetchone()[0]
    conn.execute("DELETE FROM report_fetch_seen WHERE fetch_id = ?", (fetch_id,))
    assignments = "".join(f", {name} = ?" for name in fields)
    conn.execute(
        f"UPDATE report_fetches SET completed_at = ?, rows = ?{assignments} WHERE id = ?",
        (now, rows, *fields.values(), fetch_id),
    )
    if schedule:
        _update_schedule(conn, instance_uuid, {**schedule, "last_fetch_id": fetch_id})
    return instance_uuid, kind, meeting_id


def complete_fetch(
    db: Store,
    fetch_id: int,
    *,
    api_calls: int = 0,
    restarts: int = 0,
    zero_duration_rows: int = 0,
    schedule: Mapping[str, Any] | None = None,
) -> FetchSummary:
    """Mark a fetch complete and make its rows the instance's report, in one transaction.

    `schedule` (report_schedule fields) is written in the same transaction, so a worker
    stopping right after never fetches the same stage twice.
    """
    now = utc_now()
    with durable_write(db) as conn:
        conn.execute(
            "UPDATE report_rows SET fetch_id = ? WHERE id IN (SELECT row_id FROM report_fetch_seen WHERE fetch_id = ?)",
            (fetch_id, fetch_id),
        )
        instance_uuid, kind, meeting_id = _end_fetch(
            conn,
            fetch_id,
            now,
            schedule,
            status="complete",
            api_calls=api_calls,
            restarts=restarts,
            zero_duration_rows=zero_duration_rows,
        )
        ensure_instance(conn, instance_uuid, meeting_id, kind, now)
        conn.execute(
            "UPDATE instances SET report_fetch_id = ?, report_complete = 1, report_fetched_at = ? WHERE instance_uuid = ?",
            (fetch_id, now, instance_uuid),
        )
    return get_fetch(db, fetch_id)


def fail_fetch(
    db: Store,
    fetch_id: int,
    error: str,
    *,
    api_calls: int = 0,
    restarts: int = 0,
    schedule: Mapping[str, Any] | None = None,
) -> FetchSummary:
    """Mark a fetch failed; the instance keeps the rows of its last complete fetch."""
    with durable_write(db) as conn:
        _end_fetch(
            conn,
            fetch_id,
            utc_now(),
            schedule,
            status="failed",
            error=error[:1000],
            api_calls=api_calls,
            restarts=restarts,
        )
    return get_fetch(db, fetch_id)


def get_fetch(db: Store, fetch_id: int) -> FetchSummary:
    """The recorded state of one fetch."""
    row = db.execute(
        "SELECT id, instance_uuid, status, pages, rows, new_rows, zero_duration_rows, restarts, api_calls, error "
        "FROM report_fetches WHERE id = ?",
        [fetch_id],
    ).fetchone()
    return FetchSummary(*row)


def report_rows(db: Store, instance_uuid: str) -> list[dict[str, Any]]:
    """The rows of an instance's last complete report fetch, in join order."""
    columns = ", ".join("r." + c for c in ROW_COLUMNS)
    return [
        dict(r)
        for r in db.query(
            f"SELECT {columns} FROM report_rows r "
            "JOIN instances i ON i.instance_uuid = r.instance_uuid AND r.fetch_id = i.report_fetch_id "
            "WHERE r.instance_uuid = ? ORDER BY r.join_time NULLS FIRST, r.id",
            [instance_uuid],
        )
    ]


# -- instances, registrants, tracked meetings -----------------------------------------------


def save_instances(db: Store, rows: Iterable[Mapping[str, Any]], page: FetchedPage | None = None) -> list[str]:
    """Record instances listed by Zoom (and the listing as evidence); returns the new uuids."""
    now = utc_now()
    new: list[str] = []
    with durable_write(db) as conn:
        if page is not None:
            append_report_page(conn, page, meeting_uuid=None)
        for row in rows:
            cursor = conn.execute(
                "INSERT INTO instances (instance_uuid, meeting_id, kind, start_time, first_seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (row["instance_uuid"], row.get("meeting_id"), row.get("kind"), row.get("start_time"), now),
            )
            if cursor.rowcount:
                new.append(row["instance_uuid"])
            else:
                conn.execute(
                    "UPDATE instances SET meeting_id = coalesce(meeting_id, ?), kind = coalesce(kind, ?), "
                    "start_time = coalesce(start_time, ?) WHERE instance_uuid = ?",
                    (row.get("meeting_id"), row.get("kind"), row.get("start_time"), row["instance_uuid"]),
                )
    return new


def save_registrants(db: Store, page: FetchedPage, rows: Sequence[Mapping[str, Any]]) -> SavedPage:
    """Store a registrants page as evidence and upsert its registrants (a status may change)."""
    now = utc_now()
    columns = ", ".join(REGISTRANT_COLUMNS)
    marks = ", ".join("?" * len(REGISTRANT_COLUMNS))
    assignments = ", ".join(c + " = ?" for c in REGISTRANT_COLUMNS)
    changed = " OR ".join(c + " IS DISTINCT FROM ?" for c in REGISTRANT_COLUMNS)
    with durable_write(db) as conn:
        record = append_report_page(conn, page, meeting_uuid=None)
        new_rows = conn.executemany(
            f"INSERT INTO registrants (meeting_id, registrant_id, {columns}, raw_id, fetched_at) "
            f"VALUES (?, ?, {marks}, ?, ?) ON CONFLICT DO NOTHING",
            [
                (r["meeting_id"], r["registrant_id"], *(r.get(c) for c in REGISTRANT_COLUMNS), record.id, now)
                for r in rows
            ],
        ).rowcount
        # Only a registrant whose details changed points at the newer page: re-fetching the
        # same roster leaves the table as it was.
        conn.executemany(
            f"UPDATE registrants SET {assignments}, raw_id = ?, fetched_at = ? "
            f"WHERE meeting_id = ? AND registrant_id = ? AND ({changed})",
            [
                (*(r.get(c) for c in REGISTRANT_COLUMNS), record.id, now, r["meeting_id"], r["registrant_id"])
                + tuple(r.get(c) for c in REGISTRANT_COLUMNS)
                for r in rows
            ],
        )
    return SavedPage(record.id, len(rows), new_rows)


def track(
    db: Store,
    meeting_id: str,
    *,
    kind: str | None = None,
    topic: str | None = None,
    source: str = "cli",
) -> None:
    """Add a meeting or webinar to the set the poller follows (idempotent)."""
    with durable_write(db) as conn:
        track_meeting(conn, meeting_id, kind=kind, topic=topic, source=source)


def meeting_kind(db: Store, meeting_id: str) -> str | None:
    """'meeting' or 'webinar' when tracking or a known instance says so, else None."""
    return query_one(
        db,
        "SELECT kind FROM (SELECT kind FROM tracked_meetings WHERE meeting_id = ? AND kind IS NOT NULL "
        "UNION ALL SELECT kind FROM instances WHERE meeting_id = ? AND kind IS NOT NULL) AS k LIMIT 1",
        [meeting_id, meeting_id],
    )


def ended_instances(db: Store, meeting_id: str) -> list[str]:
    """Instances of a meeting that webhooks say have ended."""
    return [
        r[0]
        for r in db.execute(
            "SELECT instance_uuid FROM instances WHERE meeting_id = ? AND end_time IS NOT NULL "
            "ORDER BY start_time NULLS FIRST, instance_uuid",
            [meeting_id],
        )
    ]


# -- the re-fetch schedule ------------------------------------------------------------------


def worker_name() -> str:
    """host:pid, to tell whose claim a schedule row carries."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _claim_is_dead(claimed_by: str | None) -> bool:
    """True when the claim belongs to a process of this host that no longer runs."""
    if not claimed_by or ":" not in claimed_by:
        return False
    host, _, pid = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def unscheduled_ended_instances(db: Store) -> list[dict[str, Any]]:
    """Instances that webhooks say have ended and that have no schedule row yet."""
    return [
        dict(r)
        for r in db.query(
            "SELECT i.instance_uuid, i.meeting_id, i.kind, i.end_time FROM instances i "
            "LEFT JOIN report_schedule s ON s.instance_uuid = i.instance_uuid "
            "WHERE i.end_time IS NOT NULL AND i.kind IS NOT NULL AND s.instance_uuid IS NULL"
        )
    ]


def schedule_instances(db: Store, rows: Iterable[Mapping[str, Any]]) -> int:
    """Add schedule rows (instance_uuid, meeting_id, kind, ended_at, stage, due_at); existing rows stay."""
    now = utc_now()
    with durable_write(db) as conn:
        return conn.executemany(
            "INSERT INTO report_schedule (instance_uuid, meeting_id, kind, ended_at, stage, due_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (r["instance_uuid"], r.get("meeting_id"), r["kind"], r["ended_at"], r["stage"], r["due_at"], now)
                for r in rows
            ],
        ).rowcount


def due_fetches(db: Store, *, now: str, limit: int) -> list[dict[str, Any]]:
    """Pending schedule rows due by `now` and not claimed by a live worker, earliest first."""
    candidates = [
        dict(r)
        for r in db.query(
            "SELECT * FROM report_schedule WHERE status = 'pending' AND due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?",
            [now, limit * 4],
        )
    ]
    free = [
        r for r in candidates if not r["claimed_until"] or r["claimed_until"] <= now or _claim_is_dead(r["claimed_by"])
    ]
    return free[:limit]


def claim_fetch(db: Store, instance_uuid: str, *, now: str, until: str, worker: str) -> bool:
    """Claim a pending schedule row until `until`; False when another live worker holds it."""
    with durable_write(db) as conn:
        row = conn.execute(
            "SELECT status, claimed_by, claimed_until FROM report_schedule WHERE instance_uuid = ?", (instance_uuid,)
        ).fetchone()
        if row is None or row[0] != "pending":
            return False
        status, claimed_by, claimed_until = row
        if claimed_until and claimed_until > now and claimed_by != worker and not _claim_is_dead(claimed_by):
            return False
        _update_schedule(conn, instance_uuid, {"claimed_by": worker, "claimed_until": until})
        return True


def update_schedule(db: Store, instance_uuid: str, **fields: Any) -> None:
    """Change one schedule row (due time, status, claim...)."""
    with durable_write(db) as conn:
        _update_schedule(conn, instance_uuid, fields)


def schedule_row(db: Store, instance_uuid: str) -> dict[str, Any] | None:
    """One instance's schedule row, or None."""
    rows = list(db.query("SELECT * FROM report_schedule WHERE instance_uuid = ?", [instance_uuid]))
    return rows[0] if rows else None


def meetings_to_discover(db: Store, *, checked_before: str) -> list[dict[str, Any]]:
    """Tracked meetings whose instance list was not read since `checked_before`, oldest first."""
    return [
        dict(r)
        for r in db.query(
            "SELECT t.meeting_id, t.kind, t.source, t.added_at, d.checked_at FROM tracked_meetings t "
            "LEFT JOIN report_discovery d ON d.meeting_id = t.meeting_id "
            "WHERE d.checked_at IS NULL OR d.checked_at < ? ORDER BY d.checked_at NULLS FIRST",
            [checked_before],
        )
    ]


def record_discovery(
    db: Store,
    meeting_id: str,
    *,
    instances: int,
    error: str | None = None,
    kind: str | None = None,
    checked_at: str | None = None,
) -> None:
    """Note that a meeting's instance list was read at `checked_at` (or why it could not be)."""
    with durable_write(db) as conn:
        conn.execute(
            "INSERT INTO report_discovery (meeting_id, checked_at, instances, error) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (meeting_id) DO UPDATE SET checked_at = excluded.checked_at, instances = excluded.instances, "
            "error = excluded.error",
            (meeting_id, checked_at or utc_now(), instances, error),
        )
        if kind:
            conn.execute(
                "UPDATE tracked_meetings SET kind = coalesce(kind, ?) WHERE meeting_id = ?", (kind, meeting_id)
            )


def schedule_rows(db: Store, *, limit: int = 50) -> list[dict[str, Any]]:
    """The report poller's schedule, pending first, soonest due first."""
    return [
        dict(r)
        for r in db.query(
            "SELECT instance_uuid, meeting_id, kind, status, stage, due_at, attempts, extra_fetches, last_error "
            "FROM report_schedule ORDER BY CASE WHEN status = 'done' THEN 1 ELSE 0 END, due_at NULLS FIRST LIMIT ?",
            [limit],
        )
    ]
