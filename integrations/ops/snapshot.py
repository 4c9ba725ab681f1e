"""What the service is doing right now, read from the database and the disk (issue 18).

One `Snapshot` feeds both GET /metrics (integrations/ops/collector.py) and the alerts the
worker raises (integrations/ops/alerts.py), so Prometheus and the service's own alerts
always judge the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from integrations.ingest.backlog import backlog
from integrations.reports.sync import paused_until
from store.db import Store
from store.ops import (
    fetch_counts,
    last_refresh,
    live_meetings,
    oldest_unnormalized_delivery,
    recent_fetch_statuses,
    report_api_calls_since,
)
from store.reports import from_iso, to_iso

# A meeting whose start is older than this is not "live" any more, ended event or not.
LIVE_WINDOW = timedelta(hours=24)
RECENT_FETCHES = 20


@dataclass(frozen=True)
class LiveMeeting:
    """A meeting or webinar in progress: people in it, and how long since its last delivery."""

    instance_uuid: str
    meeting_id: str | None
    kind: str | None
    topic: str | None
    in_meeting: int
    silent_seconds: float


@dataclass(frozen=True)
class Snapshot:
    """The figures behind the state metrics and the alerts, at `now`; only `take_snapshot` makes one, whole."""

    now: datetime
    live: list[LiveMeeting]
    # Where acknowledged deliveries wait for raw_records: "spool" (SQLite) or "intake"
    # (PostgreSQL); spool_lag_seconds is the age of the oldest one there, either way.
    backlog: str
    spool_files: int
    spool_pending_bytes: int
    intake_deliveries: int
    spool_lag_seconds: float
    normalize_lag_seconds: float
    database_bytes: int
    # None on PostgreSQL: the server's disk cannot be seen from here (watch it on the server).
    disk_free_bytes: int | None
    api_calls_today: int
    api_daily_limit: int
    api_paused: bool
    fetches: dict[str, int]
    failed_fetches_in_a_row: int
    last_refresh_seconds: float | None
    last_refresh_age_seconds: float | None

    @property
    def import_lag_seconds(self) -> float:
        """Age of the oldest delivery not yet imported or normalized (0: none waiting)."""
        return max(self.spool_lag_seconds, self.normalize_lag_seconds)

    @property
    def api_budget_remaining(self) -> int:
        """Report API calls left today (0 while Zoom's daily limit pauses polling)."""
        return 0 if self.api_paused else max(0, self.api_daily_limit - self.api_calls_today)


def _age(moment: str | None, now: datetime) -> float:
    if not moment:
        return 0.0
    try:
        return max(0.0, (now - from_iso(moment)).total_seconds())
    except ValueError:
        return 0.0


def take_snapshot(db: Store, *, daily_limit: int, now: datetime) -> Snapshot:
    """Read every figure once, at `now`."""
    live = [
        LiveMeeting(
            instance_uuid=row["instance_uuid"],
            meeting_id=row["meeting_id"],
            kind=row["kind"],
            topic=row["topic"],
            in_meeting=row["in_meeting"],
            silent_seconds=_age(row["last_delivery_at"], now),
        )
        for row in live_meetings(db, since=to_iso(now - LIVE_WINDOW))
    ]
    waiting = backlog(db)
    spool = waiting.status(db)
    statuses = recent_fetch_statuses(db, RECENT_FETCHES)
    in_a_row = next((i for i, status in enumerate(statuses) if status != "failed"), len(statuses))
    refresh = last_refresh(db)
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Snapshot(
        now=now,
        live=live,
        backlog=waiting.name,
        spool_files=spool.get("files", 0),
        spool_pending_bytes=spool.get("pending_bytes", 0),
        intake_deliveries=spool.get("deliveries", 0),
        spool_lag_seconds=_age(waiting.oldest(db), now),
        normalize_lag_seconds=_age(oldest_unnormalized_delivery(db), now),
        database_bytes=db.size_bytes(),
        disk_free_bytes=db.disk_free_bytes(),
        api_calls_today=report_api_calls_since(db, to_iso(midnight)),
        api_daily_limit=daily_limit,
        api_paused=paused_until(db, now) is not None,
        fetches=fetch_counts(db),
        failed_fetches_in_a_row=in_a_row,
        last_refresh_seconds=refresh[1] if refresh else None,
        last_refresh_age_seconds=_age(refresh[0], now) if refresh else None,
    )
