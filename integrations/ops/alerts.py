"""Alerts the service raises itself, so a one-machine setup needs no Prometheus (issue 18).

The worker's alert job reads a snapshot (integrations/ops/snapshot.py), decides which
conditions hold (`firing`, pure), and keeps `ops_alerts` in step: a new incident is a
WARNING log line, a reason in /healthz and, with ALERT_WEBHOOK_URL, one POST; its end is
one more POST. The table is the memory, so a restarted worker sends neither twice.
deploy/prometheus-alerts.yml holds the same rules for those who run Prometheus.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from integrations.config import AlertThresholds, Config
from integrations.ops.metrics import metrics, safely
from integrations.ops.snapshot import Snapshot, take_snapshot
from store.db import DatabaseUnavailable, Store, open_db
from store.ops import alert_rows, clear_alert, mark_notified, raise_alert, update_alert_message
from store.reports import to_iso

log = logging.getLogger(__name__)

NOTIFY_TIMEOUT_SECONDS = 5.0
PREFIX = "attendance-worker"


@dataclass(frozen=True)
class Condition:
    """One alert that holds now: its key (alert or alert:subject) and what to tell."""

    key: str
    alert: str
    subject: str | None
    message: str


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def firing(snap: Snapshot, limits: AlertThresholds) -> list[Condition]:
    """The conditions that hold in `snap`, in a stable order."""
    found: list[Condition] = []
    for meeting in snap.live:
        if meeting.silent_seconds >= limits.silence_seconds:
            what = f"{meeting.kind or 'meeting'} {meeting.meeting_id or '?'} ({meeting.instance_uuid})"
            found.append(
                Condition(
                    f"silence:{meeting.instance_uuid}",
                    "silence",
                    meeting.instance_uuid,
                    f"no webhook delivery for {_minutes(meeting.silent_seconds)} from live {what} "
                    f"with {meeting.in_meeting} people in it: check the app's event subscription and secret",
                )
            )
    if snap.import_lag_seconds > limits.import_lag_seconds:
        found.append(
            Condition(
                "import_lag",
                "import_lag",
                None,
                f"deliveries wait {snap.import_lag_seconds:.0f}s to be imported "
                f"({snap.backlog} {snap.spool_lag_seconds:.0f}s, normalization {snap.normalize_lag_seconds:.0f}s; "
                f"bound {limits.import_lag_seconds:.0f}s): is the worker running?",
            )
        )
    if snap.failed_fetches_in_a_row >= limits.sync_failures:
        found.append(
            Condition(
                "report_sync_failing",
                "report_sync_failing",
                None,
                f"the last {snap.failed_fetches_in_a_row} report fetches failed: see `worker.py poll-status` "
                "and run `worker.py doctor`",
            )
        )
    if snap.disk_free_bytes is not None and snap.disk_free_bytes < limits.min_free_disk_bytes:
        found.append(
            Condition(
                "disk_low",
                "disk_low",
                None,
                f"{snap.disk_free_bytes / 1024 / 1024:.0f} MB free on the database's disk "
                f"(bound {limits.min_free_disk_bytes / 1024 / 1024:.0f} MB)",
            )
        )
    if snap.api_daily_limit > 0 and snap.api_budget_remaining * 100 < limits.api_budget_percent * snap.api_daily_limit:
        found.append(
            Condition(
                "api_budget_low",
                "api_budget_low",
                None,
                f"{snap.api_budget_remaining} of {snap.api_daily_limit} daily report API calls left"
                + (" (Zoom's daily limit reached: polling paused)" if snap.api_paused else ""),
            )
        )
    return found


def notice_text(kind: str, row: dict) -> str:
    """The one-line text of a notice (Slack's and Teams' incoming webhooks both take `text`)."""
    if kind == "raised":
        return f"[{PREFIX}] ALERT {row['alert']}: {row['message']}"
    return f"[{PREFIX}] RESOLVED {row['alert']}: {row['message']} (since {row['raised_at']})"


def post_notice(session: requests.Session, url: str, text: str) -> bool:
    """POST {"text": text} to the alert hook; True when it answered 2xx."""
    try:
        response = session.post(url, json={"text": text}, timeout=NOTIFY_TIMEOUT_SECONDS)
    except requests.RequestException as e:
        log.warning("alert hook unreachable, retrying at the next check: %s", type(e).__name__)
        return False
    if not 200 <= response.status_code < 300:
        log.warning("alert hook answered %d, retrying at the next check", response.status_code)
        return False
    return True


class AlertChecker:
    """The alert job: evaluate, record, notify. `now` is injected (tests move time)."""

    def __init__(
        self,
        config: Config,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        session: requests.Session | None = None,
    ):
        self.config = config
        self.limits = config.alert_thresholds
        self.now = now
        self.session = session or requests.Session()

    def check(self, db: Store) -> list[Condition]:
        """One evaluation; returns the conditions that hold."""
        moment = self.now()
        stamp = to_iso(moment)
        snap = take_snapshot(db, daily_limit=self.config.zoom_daily_api_limit, now=moment)
        conditions = firing(snap, self.limits)
        stored = {row["key"]: row for row in alert_rows(db)}
        holding = {c.key for c in conditions}
        for condition in conditions:
            row = stored.get(condition.key)
            if row is None or row["cleared_at"] is not None:
                log.warning("ALERT %s: %s", condition.alert, condition.message)
                raise_alert(
                    db,
                    condition.key,
                    alert=condition.alert,
                    subject=condition.subject,
                    message=condition.message,
                    now=stamp,
                )
            elif row["message"] != condition.message:
                update_alert_message(db, condition.key, condition.message, stamp)
        for key, row in stored.items():
            if row["cleared_at"] is None and key not in holding:
                log.warning("RESOLVED %s: %s", row["alert"], row["message"])
                clear_alert(db, key, now=stamp)
        self.notify(db, stamp)
        return conditions

    def notify(self, db: Store, stamp: str) -> None:
        """Send what the hook has not taken yet: each incident's start, then its end."""
        url = self.config.alert_webhook_url
        if not url:
            return
        for row in alert_rows(db):
            if row["notified_raised_at"] is None:
                if row["cleared_at"] is not None:
                    # Over before its notice went out: telling only that it ended says nothing.
                    mark_notified(db, row["key"], column="notified_raised_at", now=stamp)
                    mark_notified(db, row["key"], column="notified_cleared_at", now=stamp)
                    continue
                self._send(db, row, "raised", "notified_raised_at", url, stamp)
            elif row["cleared_at"] is not None and row["notified_cleared_at"] is None:
                self._send(db, row, "cleared", "notified_cleared_at", url, stamp)

    def _send(self, db, row: dict, kind: str, column: str, url: str, stamp: str) -> None:
        sent = post_notice(self.session, url, notice_text(kind, row))
        safely(lambda: metrics().alert_notifications.labels(kind, "sent" if sent else "failed").inc())
        if sent:
            mark_notified(db, row["key"], column=column, now=stamp)

    def __call__(self) -> list[Condition] | None:
        """The scheduler job: open the database, check, close."""
        db = open_db(self.config.database_path, lock_timeout=self.config.db_lock_timeout_seconds)
        try:
            return self.check(db)
        except DatabaseUnavailable as e:
            log.warning("alert check postponed, database unavailable: %s", e)
            return None
        finally:
            db.close()
