"""Gauges computed at scrape time from the database and the disk (issue 18).

A scrape reads the state once (integrations/ops/snapshot.py) and reports it; nothing here
is kept between scrapes, so every web process answers with the same figures, and so would a
process that just started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from integrations.ops.snapshot import Snapshot, take_snapshot
from store.db import DatabaseUnavailable, Store
from store.errors import DRIVER_ERRORS
from store.ops import alert_rows
from store.postgres import redact_text

log = logging.getLogger(__name__)
ALERT_NAMES = ("silence", "import_lag", "report_sync_failing", "disk_low", "api_budget_low")


def gauge(name: str, documentation: str, value: float | None, labels: dict[str, str] | None = None) -> Metric:
    """One gauge family with one sample (none when `value` is None)."""
    family = GaugeMetricFamily(name, documentation, labels=list(labels or {}))
    if value is not None:
        family.add_metric(list((labels or {}).values()), value)
    return family


def snapshot_metrics(snap: Snapshot) -> Iterator[Metric]:
    """The state gauges of one snapshot."""
    silence = GaugeMetricFamily(
        "zoom_live_meeting_seconds_since_last_delivery",
        "Seconds since the last webhook delivery of each live meeting (started, not ended, people in it)",
        labels=["meeting_id", "instance_uuid", "kind"],
    )
    people = GaugeMetricFamily(
        "zoom_live_meeting_participants",
        "People in each live meeting, by the derived attendance tables",
        labels=["meeting_id", "instance_uuid", "kind"],
    )
    for meeting in snap.live:
        labels = [meeting.meeting_id or "", meeting.instance_uuid, meeting.kind or ""]
        silence.add_metric(labels, meeting.silent_seconds)
        people.add_metric(labels, meeting.in_meeting)
    yield silence
    yield people
    yield gauge("attendance_live_meetings", "Meetings and webinars live now", len(snap.live))
    if snap.backlog == "spool":
        yield gauge(
            "attendance_spool_files", "Spool files (webhook deliveries on disk before import)", snap.spool_files
        )
        yield gauge(
            "attendance_spool_pending_bytes",
            "Bytes of acknowledged deliveries in the spool not yet imported into raw_records",
            snap.spool_pending_bytes,
        )
    else:
        yield gauge(
            "attendance_intake_deliveries",
            "Acknowledged deliveries in webhook_intake not yet chained into raw_records (PostgreSQL)",
            snap.intake_deliveries,
        )
    lag = GaugeMetricFamily(
        "attendance_oldest_unimported_delivery_age_seconds",
        "Age of the oldest delivery waiting, by stage: spool or intake (PostgreSQL) (not in raw_records yet), "
        "normalize (in raw_records, not normalized yet); 0 when none waits",
        labels=["stage"],
    )
    lag.add_metric([snap.backlog], snap.spool_lag_seconds)
    lag.add_metric(["normalize"], snap.normalize_lag_seconds)
    yield lag
    yield gauge(
        "attendance_database_size_bytes",
        "Size of the SQLite database and its WAL (PostgreSQL: the database on the server)",
        snap.database_bytes,
    )
    if snap.disk_free_bytes is not None:  # not knowable for a PostgreSQL server: watch it there
        yield gauge("attendance_disk_free_bytes", "Free bytes on the database's filesystem", snap.disk_free_bytes)
    yield gauge(
        "zoom_api_daily_budget_remaining",
        "Report (Heavy) API calls left today under ZOOM_DAILY_API_LIMIT; 0 while Zoom's daily limit pauses polling",
        snap.api_budget_remaining,
    )
    yield gauge("zoom_api_daily_budget_limit", "ZOOM_DAILY_API_LIMIT", snap.api_daily_limit)
    fetches = GaugeMetricFamily(
        "zoom_report_fetches", "Report fetches recorded in the database, by status", labels=["status"]
    )
    for status in ("complete", "failed", "running"):
        fetches.add_metric([status], snap.fetches.get(status, 0))
    yield fetches
    yield gauge(
        "zoom_report_fetches_failed_in_a_row",
        "Report fetches that failed one after the other, up to the latest",
        snap.failed_fetches_in_a_row,
    )
    yield gauge(
        "attendance_derived_refresh_last_duration_seconds",
        "Seconds the latest refresh of one instance's derived tables took",
        snap.last_refresh_seconds,
    )
    yield gauge(
        "attendance_derived_refresh_last_age_seconds",
        "Seconds since the latest refresh of derived tables",
        snap.last_refresh_age_seconds,
    )


class StateCollector(Collector):
    """A prometheus-client collector reading the database on every scrape."""

    def __init__(self, open_db: Callable[[], Store], *, daily_limit: int, now):
        self.open_db = open_db
        self.daily_limit = daily_limit
        self.now: Callable[[], datetime] = now

    def collect(self) -> Iterator[Metric]:
        # Read everything before yielding anything: a database that fails half-way must not
        # leave half of the gauges in the answer.
        try:
            db = self.open_db()
            snap = take_snapshot(db, daily_limit=self.daily_limit, now=self.now())
            raised = {row["alert"] for row in alert_rows(db, active_only=True)}
        except (DatabaseUnavailable, *DRIVER_ERRORS, OSError) as e:
            # The scrape still answers (the process's own counters are good): a 500 would
            # look like the web process is down, while it is the database that is.
            log.warning(
                "metrics: the database gauges are left out, the database cannot be read: %s", redact_text(str(e))
            )
            yield database_up(False)
            return
        yield database_up(True)
        yield from snapshot_metrics(snap)
        active = GaugeMetricFamily(
            "attendance_alert_active",
            "1 while the service's own alert holds (ops_alerts), by alert",
            labels=["alert"],
        )
        for name in ALERT_NAMES:
            active.add_metric([name], 1.0 if name in raised else 0.0)
        yield active


def database_up(up: bool) -> Metric:
    """attendance_database_up: 1 when this scrape read the database, 0 when it could not."""
    return gauge(
        "attendance_database_up",
        "1 when the scrape read the database's state, 0 when it could not (server down, locked, unreadable): "
        "the other state gauges are then left out",
        1.0 if up else 0.0,
    )
