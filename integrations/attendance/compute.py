"""The attendance rules of issue 4, as one pure function from evidence to table rows.

`compute_attendance` is the only implementation of the rules: the derived tables are its
output. It never reads the clock, so an incremental refresh equals a rebuild (issue 8)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any

from integrations.attendance.identity import Person, group_people, normalize_email
from integrations.attendance.intervals import OPEN, Interval, clip, concurrency, iso_time, length, peak, union
from integrations.attendance.segments import REPORT, WEBHOOK, Segment


@dataclass(frozen=True)
class InstanceFacts:
    """What the evidence says about one instance, besides its participants."""

    instance_uuid: str
    meeting_id: str | None = None
    kind: str | None = None
    topic: str | None = None
    started_at: int | None = None  # from a started event (issue 4: the window's start)
    ended_at: int | None = None  # from an ended event
    report_complete: bool = False
    webhook_events: int = 0
    report_rows: int = 0


@dataclass
class InstanceAttendance:
    """Rows of the derived tables for one instance."""

    instance: dict[str, Any]
    people: list[dict[str, Any]] = field(default_factory=list)
    attendance: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)


def as_json(values: Iterable[str]) -> str:
    """A list of strings as the compact JSON text stored in list columns.

    The same text as `json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))`,
    built with the C string encoder: a refresh writes 100,000 of these.
    """
    return "[" + ",".join(map(encode_basestring, values)) + "]"


Window = tuple[int | None, int | None, bool]  # (start, end, ended) of an instance


def _window(facts: InstanceFacts, chosen: Sequence[Segment]) -> Window:
    """(start, end, ended): start/end None when unknown or still open."""
    starts = [s.start for s in chosen if s.start is not None]
    start = facts.started_at if facts.started_at is not None else min(starts, default=None)
    if facts.ended_at is not None:
        return start, facts.ended_at, True
    points = [t for s in chosen for t in (s.start, s.end) if t is not None]
    if facts.report_complete:
        return start, max(points, default=None), True  # a report exists only for a finished instance
    if any(s.end is None for s in chosen):
        return start, None, False  # live: open connections count until now, added by readers
    return start, max(points, default=None), False


def _intervals(segments: Iterable[Segment], window_end: int | None, ended: bool) -> list[Interval]:
    out = []
    for s in segments:
        end = s.end
        if end is None:
            # No leave: it counts until the instance's end if it ended, else until now (OPEN).
            end = window_end if ended and window_end is not None else (s.start if ended else OPEN)
        start = s.start if s.start is not None else end  # join never seen: no time we can prove
        if start is None or end is None:
            continue  # no time at all (an ended instance whose end is unknown): nothing to prove
        out.append((start, end))
    return out


def _registrant_index(registrants: Sequence[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    by_id: dict[str, str] = {}
    by_email: dict[str, str] = {}
    for r in sorted(registrants, key=lambda r: r["registrant_id"]):
        by_id[r["registrant_id"]] = r["registrant_id"]
        email = normalize_email(r.get("email"))
        if email:
            by_email.setdefault(email, r["registrant_id"])
    return by_id, by_email


def _match_registrant(person: Person, by_id: dict[str, str], by_email: dict[str, str]) -> tuple[str | None, str | None]:
    """Issue 4: registrants match people by registrant id, else email."""
    for rid in person.registrant_ids:
        if rid in by_id:
            return rid, "registrant_id"
    for email in person.emails:
        if email in by_email:
            return by_email[email], "email"
    return None, None


def compute_attendance(
    facts: InstanceFacts,
    webhook: Sequence[Segment],
    report: Sequence[Segment],
    registrants: Sequence[Mapping[str, Any]] = (),
) -> InstanceAttendance:
    """People, merged sessions and attended seconds of one instance."""
    segments = [*webhook, *(report if facts.report_complete else ())]
    people = group_people(
        [s.ids for s in segments],
        same_registrant=[(r["registrant_id"], r.get("email")) for r in registrants],
    )
    chosen_by_person = [_chosen_segments(person, segments) for person in people]
    window = start, end, ended = _window(facts, [s for chosen in chosen_by_person for s in chosen])
    by_id, by_email = _registrant_index(registrants)

    result = InstanceAttendance(instance={})
    unions = []
    for person, chosen in zip(people, chosen_by_person, strict=True):
        sessions = union(clip(_intervals(chosen, end, ended), start, end))
        unions.append(sessions)
        members = [segments[i] for i in person.members]
        result.people.append(_person_row(facts, person, members))
        result.attendance.append(_attendance_row(facts, person, members, chosen, sessions, window, by_id, by_email))
        result.sessions.extend(_session_rows(facts, person, sessions, chosen[0].source))
    result.instance = _instance_row(facts, window, registrants, len(people), result.attendance, unions)
    return result


def _chosen_segments(person: Person, segments: Sequence[Segment]) -> list[Segment]:
    """The segments a person's time is computed from."""
    from_report = [segments[i] for i in person.members if segments[i].source == REPORT]
    # Issue 4: once a complete report is stored, a person's segments come from it.
    return from_report or [segments[i] for i in person.members]


def _session_rows(facts: InstanceFacts, person: Person, sessions: list[Interval], source: str) -> list[dict[str, Any]]:
    """One attendance_sessions row per merged session of a person."""
    return [
        {
            "instance_uuid": facts.instance_uuid,
            "person_key": person.key,
            "start_time": iso_time(s),
            "end_time": iso_time(e),
            "seconds": None if e >= OPEN else e - s,
            "open": int(e >= OPEN),
            "sources": as_json([source]),
        }
        for s, e in sessions
    ]


def _instance_row(
    facts: InstanceFacts,
    window: Window,
    registrants: Sequence[Mapping[str, Any]],
    people: int,
    attendance: list[dict[str, Any]],
    unions: list[list[Interval]],
) -> dict[str, Any]:
    """The attendance_instances row: the window and the instance's totals."""
    start, end, ended = window
    peak_count, peak_at = peak(concurrency(unions))
    return {
        "instance_uuid": facts.instance_uuid,
        "meeting_id": facts.meeting_id,
        "kind": facts.kind,
        "topic": facts.topic,
        "start_time": iso_time(start),
        "end_time": iso_time(end),
        "window_seconds": end - start if start is not None and end is not None else None,
        "ended": int(ended),
        "report_complete": int(facts.report_complete),
        "webhook_events": facts.webhook_events,
        "report_rows": facts.report_rows,
        # Pending and denied registrations are not (yet) registered; none stored: unknown.
        "registered": sum(1 for r in registrants if r.get("status") in (None, "approved")) if registrants else None,
        "people": people,
        "in_meeting": sum(a["in_meeting"] for a in attendance),
        "total_attended_seconds": sum(a["attended_seconds"] for a in attendance),
        "peak_concurrent": peak_count,
        "peak_at": iso_time(peak_at),
    }


def _person_row(facts: InstanceFacts, person: Person, members: list[Segment]) -> dict[str, Any]:
    names = sorted({n for s in members for n in s.ids.names})
    return {
        "instance_uuid": facts.instance_uuid,
        "person_key": person.key,
        "identity": person.identity,
        "name": person.name,
        "email": person.emails[0] if person.emails else None,
        "registrant_id": person.registrant_ids[0] if person.registrant_ids else None,
        "participant_user_id": person.participant_user_ids[0] if person.participant_user_ids else None,
        "names": as_json(names),
        "emails": as_json(person.emails),
        "registrant_ids": as_json(person.registrant_ids),
        "participant_user_ids": as_json(person.participant_user_ids),
        "connection_ids": as_json(sorted({c for s in members for c in s.connection_ids})),
    }


def _seconds(segments: list[Segment], window: Window) -> int | None:
    start, end, ended = window
    return length(union(clip(_intervals(segments, end, ended), start, end))) if segments else None


def _attendance_row(
    facts: InstanceFacts,
    person: Person,
    members: list[Segment],
    chosen: list[Segment],
    sessions: list[Interval],
    window: Window,
    by_id: dict[str, str],
    by_email: dict[str, str],
) -> dict[str, Any]:
    """The attendance row of one person: attended seconds, joins and leaves, registrant match."""
    start, end, ended = window
    open_since = next((s for s, e in sessions if e >= OPEN), None)
    joins = [s.start for s in chosen if s.start is not None]
    leaves = [s.end if s.end is not None else end for s in chosen]
    known_leaves = [t for t in leaves if t is not None]
    sources = sorted({s.source for s in members})
    matched, how = _match_registrant(person, by_id, by_email)
    return {
        "instance_uuid": facts.instance_uuid,
        "person_key": person.key,
        "attended_seconds": length(sessions),
        "open_since": iso_time(open_since),
        "segments": len(chosen),
        "first_join": iso_time(min(joins, default=None)),
        "last_leave": None
        if open_since is not None or len(known_leaves) < len(leaves)
        else iso_time(max(known_leaves, default=None)),
        "in_meeting": int(open_since is not None),
        "sources": as_json(sources),
        "seconds_from": chosen[0].source,
        "webhook_only": int(facts.report_complete and sources == [WEBHOOK]),
        "webhook_seconds": _seconds([s for s in members if s.source == WEBHOOK], window),
        "report_seconds": _seconds([s for s in members if s.source == REPORT], window),
        "registrant_id": matched or (person.registrant_ids[0] if person.registrant_ids else None),
        "registrant_matched": int(matched is not None),
        "registrant_match": how,
    }
