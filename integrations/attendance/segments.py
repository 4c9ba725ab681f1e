"""Connections (segments) from the evidence: webhook join/leave events and report rows. Pure.

A segment is one connection, join to leave (issue 4, "Rules"); webhook events pair per
connection whatever order they arrived in, and waiting-room events never count."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from integrations.attendance.identity import Identifiers, normalize_email
from integrations.attendance.intervals import epoch_seconds

WEBHOOK, REPORT = "webhook", "report"

# Room families: a breakout room gives the same person another user_id (NOTES.md: breakout
# events carry their own user_id), so its joins and leaves pair among themselves.
_MAIN, _BREAKOUT = "main", "breakout"
JOINS = {
    "meeting.participant_joined": _MAIN,
    "webinar.participant_joined": _MAIN,
    "meeting.participant_joined_breakout_room": _BREAKOUT,
    "webinar.participant_joined_breakout_room": _BREAKOUT,
}
LEAVES = {
    "meeting.participant_left": _MAIN,
    "webinar.participant_left": _MAIN,
    "meeting.participant_left_breakout_room": _BREAKOUT,
    "webinar.participant_left_breakout_room": _BREAKOUT,
}


@dataclass(slots=True)
class Segment:
    """One connection of one participant."""

    source: str
    start: int | None
    end: int | None
    ids: Identifiers
    connection_ids: tuple[str, ...] = ()  # user_id / participant_uuid values, for the people table
    inferred_end: bool = field(default=False)  # closed by a later join on the same connection


_SECONDS: dict[str, int | None] = {}  # a meeting's 100,000 times fall on far fewer distinct seconds


def _time(value: Any) -> int | None:
    if not value:
        return None
    seconds = _SECONDS.get(value, -1)
    if seconds != -1:
        return seconds
    try:
        seconds = epoch_seconds(value)
    except (ValueError, OverflowError, TypeError):
        seconds = None
    if len(_SECONDS) > 500_000:
        _SECONDS.clear()
    _SECONDS[value] = seconds
    return seconds


def _event_time(row: Mapping[str, Any], joining: bool) -> int | None:
    # webinar.participant_left may lack leave_time (NOTES.md): the event's own time stands in.
    names: tuple[str, ...] = ("join_time", "date_time") if joining else ("leave_time", "date_time")
    if not joining and row.get("event", "").endswith("participant_left"):
        names = ("leave_time",)  # its date_time, when present, is the join time in Zoom's example
    for name in names:
        t = _time(row.get(name))
        if t is not None:
            return t
    ts = row.get("event_ts")
    return int(ts) // 1000 if isinstance(ts, int) else None


_NONE: tuple[str, ...] = ()


def _set(values: Iterable[str | None]) -> tuple[str, ...]:
    """Distinct non-empty values, sorted (a tuple: a frozenset costs four times the memory)."""
    found = {v for v in values if v}
    return tuple(sorted(found)) if found else _NONE


def _identifiers(rows: list[Mapping[str, Any]], *, source: str, ref: str, links: Iterable[str]) -> Identifiers:
    registrant_ids, emails, user_ids, names = set(), set(), set(), []
    for r in rows:
        if r.get("registrant_id"):
            registrant_ids.add(r["registrant_id"])
        if r.get("email"):
            email = normalize_email(r["email"])
            if email:
                emails.add(email)
        if r.get("participant_user_id"):
            user_ids.add(r["participant_user_id"])
        if r.get("user_name"):
            names.append(r["user_name"])
    return Identifiers(
        registrant_ids=_set(registrant_ids),
        emails=_set(emails),
        participant_user_ids=_set(user_ids),
        names=tuple(names),
        links=_set(links),
        ref=f"{source}:{ref}",
    )


def _connection_key(
    row: Mapping[str, Any], room: str, uuid_to_user: Mapping[tuple[str, str], str | None]
) -> str | None:
    user_id = row.get("user_id")
    if user_id:
        return f"{room}:u:{user_id}"
    puuid = row.get("participant_uuid")
    if not puuid:
        return None
    mapped = uuid_to_user.get((room, puuid))
    return f"{room}:u:{mapped}" if mapped else f"{room}:p:{puuid}"


def webhook_segments(events: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """Pair one instance's participant_events rows into segments."""
    rows = [r for r in events if r.get("event") in JOINS or r.get("event") in LEAVES]
    # A leave that carries only participant_uuid pairs with the user_id that uuid had,
    # when there was exactly one in that room family.
    seen: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        room = JOINS.get(r["event"]) or LEAVES[r["event"]]
        if r.get("user_id") and r.get("participant_uuid"):
            seen.setdefault((room, r["participant_uuid"]), set()).add(r["user_id"])
    uuid_to_user = {k: next(iter(v)) if len(v) == 1 else None for k, v in seen.items()}

    by_connection: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        room = JOINS.get(r["event"]) or LEAVES[r["event"]]
        key = _connection_key(r, room, uuid_to_user)
        if key is not None:
            by_connection.setdefault(key, []).append(r)
    segments: list[Segment] = []
    for key in sorted(by_connection):
        segments.extend(_pair_connection(key, by_connection[key]))
    return segments


def _pair_connection(key: str, rows: list[Mapping[str, Any]]) -> list[Segment]:
    """One connection's segments: its events paired in time order, with who it is."""
    pairs = _pair_marks(_time_marks(rows))
    links, connection_ids = _connection_links(key, rows, several=len(pairs) > 1)
    ids = _identifiers(rows, source=WEBHOOK, ref=key, links=links)
    return [
        Segment(WEBHOOK, start, end, ids, tuple(sorted(connection_ids)), inferred) for start, end, inferred in pairs
    ]


_JOIN, _LEAVE = 0, 1  # a join sorts before a leave at the same second


def _time_marks(rows: list[Mapping[str, Any]]) -> set[tuple[int, int]]:
    """(second, join or leave) of each event with a known time; duplicates collapse."""
    marks = set()
    for r in rows:
        joining = r["event"] in JOINS
        t = _event_time(r, joining)
        if t is not None:
            marks.add((t, _JOIN if joining else _LEAVE))
    return marks


def _pair_marks(marks: set[tuple[int, int]]) -> list[tuple[int | None, int | None, bool]]:
    """Walk the marks in time order: each join opens, the next leave closes; (start, end, inferred end)."""
    pairs: list[tuple[int | None, int | None, bool]] = []
    open_at: int | None = None
    for t, kind in sorted(marks):
        if kind == _JOIN:
            if open_at is not None:
                # Two joins on one connection: it must have left in between (a lost leave).
                pairs.append((open_at, t, True))
            open_at = t
        elif open_at is not None:
            pairs.append((open_at, t, False))
            open_at = None
        elif not pairs:
            pairs.append((None, t, False))  # the join was lost: present at `t`, for no known time
        # else: a second leave after a closed segment (a redelivery with another time): ignored
    if open_at is not None:
        pairs.append((open_at, None, False))
    return pairs


def _connection_links(key: str, rows: list[Mapping[str, Any]], *, several: bool) -> tuple[set[str], set[str]]:
    """The links that join this connection to its other records, and its connection ids."""
    # Segments of one connection are one person (several only after a lost leave).
    links = {f"wh\0{key}"} if several else set()
    puuids = {r["participant_uuid"] for r in rows if r.get("participant_uuid")}
    user_ids = {r["user_id"] for r in rows if r.get("user_id")}
    links.update(f"puuid\0{p}" for p in puuids)
    if key.startswith(_MAIN):
        names = {r["user_name"] for r in rows if r.get("user_name")}
        # The report's user_id names the same connection: same id and same name, same person.
        links.update(f"conn\0{u}\0{n}" for u in user_ids for n in names)
    return links, puuids | user_ids


def report_segments(rows: Iterable[Mapping[str, Any]]) -> list[Segment]:
    """Segments from the report rows of an instance's complete fetch (waiting-room rows dropped)."""
    rows = [r for r in rows if r.get("status") != "in_waiting_room"]  # issue 4: waiting does not count
    repeated = {u for u, n in Counter(r.get("user_id") for r in rows).items() if u and n > 1}
    segments = []
    for r in rows:
        user_id, name = r.get("user_id"), r.get("name")
        links = []
        if user_id and name:
            links.append(f"conn\0{user_id}\0{name}")  # the webhook connection with that id and name
        if user_id in repeated:
            links.append(f"rp\0{user_id}")  # rows of one connection (Zoom's failover rows)
        email = normalize_email(r.get("user_email"))
        ids = Identifiers(
            registrant_ids=(r["registrant_id"],) if r.get("registrant_id") else _NONE,
            emails=(email,) if email else _NONE,
            participant_user_ids=(r["participant_user_id"],) if r.get("participant_user_id") else _NONE,
            names=(name,) if name else (),
            links=tuple(links),
            ref=f"{REPORT}:{user_id or ''}:{r.get('row_hash') or r.get('id')}",
        )
        # Computed from join/leave times, never from `duration` (seconds or minutes: NOTES.md).
        segments.append(
            Segment(REPORT, _time(r.get("join_time")), _time(r.get("leave_time")), ids, (user_id,) if user_id else ())
        )
    return segments
