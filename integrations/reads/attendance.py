"""What the `attendance` CLI commands and the read API answer, shaped for JSON and CSV.

Both go through `current_instance` / `current_meetings`, which normalize what is stored
and bring the derived tables up to date before reading them, so the CLI, the API and a
SQL user of the tables see the same numbers (issue 8: one implementation of the rules).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from integrations.derived.refresh import refresh_instances
from integrations.ingest.normalize import normalize_pending
from store import attendance_queries as queries
from store.db import Store
from store.derived import REFRESH_LOCK_TIMEOUT, stale_instances

MEETING_FIELDS = (
    "meeting_id",
    "instance_uuid",
    "kind",
    "topic",
    "start_time",
    "end_time",
    "webhook_events",
    "report_rows",
    "report_complete",
    "people",
)
SUMMARY_FIELDS = (
    "meeting_id",
    "instance_uuid",
    "registered",
    "unique_attendees",
    "eligible",
    "peak_concurrent",
    "peak_at",
    "median_attended_seconds",
    "total_attended_seconds",
    "webhook_events",
    "report_rows",
    "report_complete",
    "only_in_webhooks",
    "only_in_report",
    "durations_differ",
)
TIMELINE_FIELDS = ("time", "present")


def now_seconds() -> int:
    """The clock, in whole epoch seconds: only live meetings' open sessions depend on it."""
    return int(time.time())


def current_instance(
    db: Store,
    meeting: str,
    instance: str | None = None,
    *,
    live_max_age: float | None = None,
    lock_timeout: float = REFRESH_LOCK_TIMEOUT,
) -> str:
    """Resolve MEETING to an instance whose derived rows reflect everything stored.

    With `live_max_age`, a live instance computed less than that many seconds ago is
    taken as it is (its `computed_at` says when).
    """
    normalize_pending(db)
    uuid = queries.resolve_instance(db, meeting, instance)
    refresh_instances(db, [uuid], live_max_age=live_max_age, lock_timeout=lock_timeout)  # skips what is current
    return uuid


def current_meetings(
    db: Store, *, live_max_age: float | None = None, lock_timeout: float = REFRESH_LOCK_TIMEOUT
) -> list[dict[str, Any]]:
    """Every stored instance, after bringing stale derived rows up to date."""
    normalize_pending(db)
    refresh_instances(db, stale_instances(db), live_max_age=live_max_age, lock_timeout=lock_timeout)
    return queries.list_meetings(db)


def attendee_fields(result: dict[str, Any]) -> tuple[str, ...]:
    """CSV/table columns of an attendance answer (`eligible` only with a threshold)."""
    fields = queries.ATTENDEE_FIELDS
    return (*fields, "eligible") if result["meeting"]["threshold"] else fields


def summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    """A summary as one flat row: reconciliation lists become counts."""
    row = {k: summary.get(k) for k in SUMMARY_FIELDS}
    row["meeting_id"] = summary["meeting"]["meeting_id"]
    row["instance_uuid"] = summary["meeting"]["instance_uuid"]
    for name, people in summary["reconciliation"].items():
        row[name] = len(people)
    return row


_encode = json.JSONEncoder(
    ensure_ascii=False
).encode  # one encoder: json.dumps(..., ensure_ascii=False) builds one per call


def json_chunks(result: dict[str, Any], list_key: str | None = None) -> Iterator[str]:
    """JSON text, one line per list item: readable, and each line uses the fast C encoder."""
    if list_key is None:
        yield json.dumps(result, indent=2, ensure_ascii=False) + "\n"
        return
    head = {k: v for k, v in result.items() if k != list_key}
    opening = json.dumps(head, indent=2, ensure_ascii=False)[:-2] + ",\n" if head else "{\n"
    yield opening + f'  "{list_key}": ['
    for i, item in enumerate(result[list_key]):
        yield ("\n    " if i == 0 else ",\n    ") + _encode(item)
    yield ("\n  " if result[list_key] else "") + "]\n}\n"
