"""Organizer queries over the derived attendance tables (issue 4): the CLI and the API call these.

They read only the derived tables, adding only the clock: an open session runs until
`now`, as the `attendees` view does in SQL."""

from __future__ import annotations

import functools
import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from integrations.attendance.intervals import OPEN, concurrency, epoch_seconds, iso_time, present_at, steps
from store.db import Store

MAX_TIMELINE_POINTS = 100_000  # a 30-hour meeting at one point a second is 108,000: refuse finer steps


class UnknownMeeting(Exception):
    "No stored meeting, webinar or instance matches"


class BadQuery(Exception):
    "The query's options cannot be answered as given"


@dataclass(frozen=True)
class Threshold:
    """Who counts as having attended: at least N minutes, or P percent of the instance window."""

    min_minutes: float | None = None
    min_percent: float | None = None

    def __post_init__(self) -> None:
        if self.min_minutes is not None and self.min_percent is not None:
            raise BadQuery("give either a minimum in minutes or in percent, not both")
        for name, value in (("minimum minutes", self.min_minutes), ("minimum percent", self.min_percent)):
            if value is not None and not math.isfinite(value):
                raise BadQuery(f"the {name} must be a finite number, got {value}")
        if self.min_minutes is not None and self.min_minutes < 0:
            raise BadQuery("the minimum minutes must not be negative")
        if self.min_percent is not None and not 0 <= self.min_percent <= 100:
            raise BadQuery("the minimum percent must be between 0 and 100")

    @property
    def given(self) -> bool:
        return self.min_minutes is not None or self.min_percent is not None

    def describe(self) -> dict[str, float] | None:
        if self.min_minutes is not None:
            return {"min_minutes": self.min_minutes}
        if self.min_percent is not None:
            return {"min_percent": self.min_percent}
        return None

    def eligible(self, attended_seconds: int, window_seconds: int | None) -> bool | None:
        """Whether `attended_seconds` meets the threshold; None without a threshold."""
        if self.min_minutes is not None:
            return attended_seconds >= self.min_minutes * 60
        if self.min_percent is not None:
            if not window_seconds:
                return False
            # Whole seconds: the share of the window, rounded up (a float's last bit never decides).
            return attended_seconds >= math.ceil(self.min_percent * window_seconds / 100 - 1e-6)
        return None


_MEETING_NUMBER = re.compile(r"^[0-9][0-9 \-]*$")


def meeting_number(meeting: str) -> str | None:
    """A numeric meeting or webinar id as Zoom stores it ("812 3456 7890" -> "81234567890")."""
    if _MEETING_NUMBER.match(meeting.strip()):
        return re.sub(r"[ \-]", "", meeting)
    return None


def resolve_instance(db: Store, meeting: str, instance: str | None = None) -> str:
    """The instance UUID that MEETING (numeric id: its latest instance; or a UUID) names."""
    number = meeting_number(meeting)
    if instance is not None:
        row = db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [instance]).fetchone()
        if row is None:
            raise UnknownMeeting(f"no stored instance {instance!r}")
        if number is not None and row[0] != number:
            raise UnknownMeeting(f"instance {instance!r} belongs to meeting {row[0]}, not {number}")
        return instance
    if number is not None:
        row = db.execute(
            "SELECT instance_uuid FROM instances WHERE meeting_id = ? "
            "ORDER BY coalesce(start_time, first_seen_at) DESC NULLS LAST, instance_uuid DESC LIMIT 1",
            [number],
        ).fetchone()
        if row is None:
            raise UnknownMeeting(f"no stored instance of meeting or webinar {number}")
        return row[0]
    row = db.execute("SELECT instance_uuid FROM instances WHERE instance_uuid = ?", [meeting]).fetchone()
    if row is None:
        raise UnknownMeeting(f"no stored meeting or instance {meeting!r} (give a numeric id or an instance UUID)")
    return row[0]


def instance_uuids_of(db: Store, meeting: str) -> list[str]:
    """Every stored instance of a numeric meeting id, or the one instance a UUID names."""
    number = meeting_number(meeting)
    if number is not None:
        uuids = [r[0] for r in db.execute("SELECT instance_uuid FROM instances WHERE meeting_id = ?", [number])]
        if not uuids:
            raise UnknownMeeting(f"no stored instance of meeting or webinar {number}")
        return uuids
    return [resolve_instance(db, meeting)]


def _rows(db: Store, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def list_meetings(db: Store) -> list[dict[str, Any]]:
    """Every stored instance, with its window, kind, topic and evidence counts."""
    rows = _rows(
        db,
        """
        SELECT i.meeting_id, i.instance_uuid, coalesce(a.kind, i.kind) AS kind, coalesce(a.topic, i.topic) AS topic,
            a.start_time, a.end_time, a.webhook_events, a.report_rows, coalesce(a.report_complete, 0) AS report_complete,
            a.people
        FROM instances i LEFT JOIN attendance_instances a ON a.instance_uuid = i.instance_uuid
        ORDER BY i.meeting_id NULLS FIRST, coalesce(a.start_time, i.start_time, i.first_seen_at) NULLS FIRST,
            i.instance_uuid
        """,
    )
    for row in rows:
        row["report_complete"] = bool(row["report_complete"])
    return rows


def _live_seconds(stored: int, open_since: str | None, now: int) -> int:
    """Attended seconds at `now`: the open session (live meeting) runs until now."""
    if open_since is None:
        return stored
    return stored + max(0, now - epoch_seconds(open_since))


def meeting_info(db: Store, uuid: str, *, now: int, threshold: Threshold | None = None) -> dict[str, Any]:
    """The instance as the head of every answer: window, state and evidence counts."""
    rows = _rows(db, "SELECT * FROM attendance_instances WHERE instance_uuid = ?", [uuid])
    if not rows:
        raise UnknownMeeting(f"no attendance computed for instance {uuid!r}")
    row = rows[0]
    window = row["window_seconds"]
    live = not row["ended"] and row["end_time"] is None and row["start_time"] is not None
    if live:
        window = max(0, now - epoch_seconds(row["start_time"]))
    return {
        "meeting_id": row["meeting_id"],
        "instance_uuid": uuid,
        "kind": row["kind"],
        "topic": row["topic"],
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "window_seconds": window,
        "ended": bool(row["ended"]),
        "report_complete": bool(row["report_complete"]),
        "webhook_events": row["webhook_events"],
        "report_rows": row["report_rows"],
        "registered": row["registered"],
        "people": row["people"],
        "people_in_meeting": row["in_meeting"],
        "as_of": iso_time(now),
        "computed_at": _computed_at(db, uuid),
        "threshold": threshold.describe() if threshold else None,
    }


def _computed_at(db: Store, uuid: str) -> str | None:
    """When the derived rows were computed (whole seconds): a live answer lags by now minus this."""
    row = db.execute("SELECT refreshed_at FROM derived_refreshes WHERE instance_uuid = ?", [uuid]).fetchone()
    return iso_time(epoch_seconds(row[0])) if row else None


ATTENDEE_FIELDS = (
    "person_key",
    "identity",
    "name",
    "email",
    "registrant_id",
    "attended_seconds",
    "segments",
    "first_join",
    "last_leave",
    "in_meeting",
    "sources",
    "webhook_only",
)


@functools.lru_cache(maxsize=64)
def _sources_tuple(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _sources(text: str) -> list[str]:
    """A `sources` column as a list (a handful of distinct values: parsed once each)."""
    return list(_sources_tuple(text))


def attendance(
    db: Store,
    uuid: str,
    *,
    now: int,
    threshold: Threshold | None = None,
    include_absent: bool = False,
) -> dict[str, Any]:
    """`{"meeting": {...}, "attendees": [...]}`: longest attendance first."""
    threshold = threshold or Threshold()
    meeting = meeting_info(db, uuid, now=now, threshold=threshold)
    window = meeting["window_seconds"]
    attendees = [
        attendee_row(row, now=now, threshold=threshold, window=window)
        for row in db.execute(
            f"SELECT {ATTENDEE_COLUMNS} "
            "FROM attendance a JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key "
            "WHERE a.instance_uuid = ?",
            [uuid],
        )
    ]
    if include_absent:
        attendees.extend(_absent(db, uuid, meeting["meeting_id"], threshold))
    attendees.sort(key=lambda a: (-a["attended_seconds"], (a["name"] or "").casefold(), a["person_key"]))
    return {"meeting": meeting, "attendees": attendees}


def _absent(db: Store, uuid: str, meeting_id: str | None, threshold: Threshold) -> list[dict[str, Any]]:
    """Registrants who never joined this instance, with 0 seconds."""
    rows = db.execute(
        "SELECT registrant_id, name, email FROM registrant_attendance "
        "WHERE instance_uuid = ? AND person_key IS NULL AND coalesce(status, 'approved') = 'approved' "
        "ORDER BY registrant_id",
        [uuid],
    ).fetchall()
    return [absent_registrant(registrant_id, name, email, threshold) for registrant_id, name, email in rows]


# The columns `attendee_row` reads, in its order (people p JOIN attendance a).
ATTENDEE_COLUMNS = (
    "p.person_key, p.identity, p.name, p.email, a.registrant_id, a.attended_seconds, a.segments, "
    "a.first_join, a.last_leave, a.in_meeting, a.sources, a.webhook_only, a.open_since"
)


def attendee_row(row: Sequence[Any], *, now: int, threshold: Threshold, window: int | None) -> dict[str, Any]:
    """One attendee from a row of ATTENDEE_COLUMNS: seconds so far at `now`, eligibility if asked."""
    seconds = _live_seconds(row[5], row[12], now)
    attendee = {
        "person_key": row[0],
        "identity": row[1],
        "name": row[2],
        "email": row[3],
        "registrant_id": row[4],
        "attended_seconds": seconds,
        "segments": row[6],
        "first_join": row[7],
        "last_leave": row[8],
        "in_meeting": bool(row[9]),
        "sources": _sources(row[10]),
        "webhook_only": bool(row[11]),
    }
    if threshold.given:
        attendee["eligible"] = threshold.eligible(seconds, window)
    return attendee


def absent_registrant(registrant_id: str, name: str | None, email: str | None, threshold: Threshold) -> dict[str, Any]:
    """The attendance row of a registrant who never joined: 0 seconds."""
    row: dict[str, Any] = {
        "person_key": f"registrant:{registrant_id}",
        "identity": "registrant",
        "name": name,
        "email": email,
        "registrant_id": registrant_id,
        "attended_seconds": 0,
        "segments": 0,
        "first_join": None,
        "last_leave": None,
        "in_meeting": False,
        "sources": [],
        "webhook_only": False,
    }
    if threshold.given:
        row["eligible"] = False
    return row


def summary(db: Store, uuid: str, *, now: int, threshold: Threshold | None = None) -> dict[str, Any]:
    """Headline numbers of one instance, with the reconciliation of webhooks and report."""
    threshold = threshold or Threshold()
    meeting = meeting_info(db, uuid, now=now, threshold=threshold)
    head = db.execute(
        "SELECT peak_concurrent, peak_at FROM attendance_instances WHERE instance_uuid = ?", [uuid]
    ).fetchone()
    rows = db.execute(
        "SELECT a.person_key, p.name, a.attended_seconds, a.open_since, a.sources, a.webhook_only, "
        "a.webhook_seconds, a.report_seconds FROM attendance a "
        "JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key "
        "WHERE a.instance_uuid = ? ORDER BY a.person_key",
        [uuid],
    ).fetchall()
    seconds = [_live_seconds(r[2], r[3], now) for r in rows]
    only_webhooks, only_report, differ = [], [], []
    if meeting["report_complete"]:
        for key, name, _, _, sources, webhook_only, wh, rep in rows:
            if webhook_only:
                only_webhooks.append({"person_key": key, "name": name, "webhook_seconds": wh})
            elif sources == '["report"]':
                only_report.append({"person_key": key, "name": name, "report_seconds": rep})
            elif wh is not None and rep is not None and abs(wh - rep) > 60:
                differ.append({"person_key": key, "name": name, "webhook_seconds": wh, "report_seconds": rep})
    median = statistics.median(seconds) if seconds else None
    return {
        "meeting": meeting,
        "registered": meeting["registered"],
        "unique_attendees": len(rows),
        "eligible": sum(1 for s in seconds if threshold.eligible(s, meeting["window_seconds"]))
        if threshold.given
        else None,
        "peak_concurrent": head[0],
        "peak_at": head[1],
        "median_attended_seconds": int(median) if median is not None and median == int(median) else median,
        "total_attended_seconds": sum(seconds),
        "webhook_events": meeting["webhook_events"],
        "report_rows": meeting["report_rows"],
        "report_complete": meeting["report_complete"],
        "reconciliation": {
            "only_in_webhooks": only_webhooks,
            "only_in_report": only_report,
            "durations_differ": differ,
        },
    }


def timeline(db: Store, uuid: str, *, now: int, step: int = 60) -> dict[str, Any]:
    """How many people were present at each step of the instance window (the concurrency curve)."""
    if step < 1:
        raise BadQuery("the step must be at least 1 second")
    meeting = meeting_info(db, uuid, now=now)
    people: dict[str, list[tuple[int, int]]] = {}
    for key, start, end in db.execute(
        "SELECT person_key, start_time, end_time FROM attendance_sessions WHERE instance_uuid = ?", [uuid]
    ):
        people.setdefault(key, []).append((epoch_seconds(start), epoch_seconds(end) if end else OPEN))
    curve = concurrency(people.values())
    points: list[dict[str, Any]] = []
    if meeting["start_time"] is not None:
        first = epoch_seconds(meeting["start_time"])
        last = epoch_seconds(meeting["end_time"]) if meeting["end_time"] else max(first, now)
        times = steps(first, last, step)
        if len(times) > MAX_TIMELINE_POINTS:
            raise BadQuery(
                f"{len(times)} points: use a step of at least {(last - first) // MAX_TIMELINE_POINTS + 1} seconds"
            )
        points = [{"time": iso_time(t), "present": n} for t, n in zip(times, present_at(curve, times), strict=True)]
    return {"meeting": meeting, "step": step, "points": points}
