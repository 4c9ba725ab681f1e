"""Queries behind the organizer dashboard (issue 15): paged attendance, curves, one person's story.

They read the same derived tables as store/attendance_queries.py and shape rows the same
way (an attendance page row is an `attendance()` row), but page, sort and filter in SQL so
one table page of a 20,000-person webinar costs milliseconds, not a full read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from integrations.attendance.intervals import OPEN, concurrency, epoch_seconds, present_at, steps
from store.attendance_queries import (
    ATTENDEE_COLUMNS,
    BadQuery,
    Threshold,
    _live_seconds,
    _sources,
    absent_registrant,
    attendee_row,
    meeting_info,
)
from store.certificates import certificates_of_person
from store.db import Store

PAGE_SIZE = 50
SHOWS = ("all", "eligible", "not-eligible", "absent")


def _epoch_sql(column: str) -> str:
    """SQL for the whole epoch seconds of a stored UTC time (`YYYY-MM-DDTHH:MM:SS[.f]Z`) in `column`.

    Plain arithmetic on its digits, the same on SQLite and PostgreSQL, whose date functions
    differ: days from the civil date (Howard Hinnant's days_from_civil), then the time of day.
    """

    def digits(start: int, length: int) -> str:
        return f"CAST(substr({column}, {start}, {length}) AS BIGINT)"

    month = digits(6, 2)
    year = f"({digits(1, 4)} - CASE WHEN {month} <= 2 THEN 1 ELSE 0 END)"  # March-based years
    month_index = f"(CASE WHEN {month} > 2 THEN {month} - 3 ELSE {month} + 9 END)"
    days = (
        f"365 * {year} + {year} / 4 - {year} / 100 + {year} / 400 "
        f"+ (153 * {month_index} + 2) / 5 + {digits(9, 2)} - 1 - 719468"
    )
    return f"(86400 * ({days}) + 3600 * {digits(12, 2)} + 60 * {digits(15, 2)} + {digits(18, 2)})"


_OPEN_FOR = f":now - {_epoch_sql('a.open_since')}"
_LIVE_SECONDS = (
    f"a.attended_seconds + CASE WHEN a.open_since IS NULL THEN 0 WHEN {_OPEN_FOR} > 0 THEN {_OPEN_FOR} ELSE 0 END"
)
# Sort keys of the table and their SQL (live seconds: open sessions run until :now). Name and
# email are spelled exactly as the people_sort_* indexes (migration m050), so a page walks them.
_NAME = "lower(coalesce(p.name, ''))"
_EMAIL = "lower(coalesce(p.email, ''))"
SORTS = {
    "attended": _LIVE_SECONDS,
    "name": _NAME,
    "email": _EMAIL,
    "segments": "a.segments",
    "first_join": "a.first_join",
    "last_leave": "a.last_leave",
}


@dataclass(frozen=True)
class TableQuery:
    """What the attendance table shows: search text, filter, sort and page."""

    search: str = ""
    show: str = "all"
    sort: str = "attended"
    descending: bool = True
    page: int = 1

    def __post_init__(self) -> None:
        if self.show not in SHOWS:
            raise BadQuery(f"show must be one of {', '.join(SHOWS)}, got {self.show!r}")
        if self.sort not in SORTS:
            raise BadQuery(f"sort must be one of {', '.join(SORTS)}, got {self.sort!r}")
        if self.page < 1:
            raise BadQuery("page must be 1 or more")


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Case-insensitive on both databases: PostgreSQL's LIKE is case-sensitive, SQLite's is not
# for ASCII (and lower() there folds only ASCII, so SQLite matches as it did).
def _matches(*columns: str) -> str:
    return "(" + " OR ".join(f"lower({c}) LIKE lower(:q) ESCAPE '\\'" for c in columns) + ")"


def attendance_rows(
    db: Store,
    uuid: str,
    *,
    now: int,
    threshold: Threshold,
    query: TableQuery,
    limit: int | None = PAGE_SIZE,
) -> dict[str, Any]:
    """`{"meeting", "total", "attendees"}`: one page (or with limit None, every row) of the table."""
    if query.show in ("eligible", "not-eligible") and not threshold.given:
        raise BadQuery("set a threshold (minimum minutes or percent) to filter by eligibility")
    meeting = meeting_info(db, uuid, now=now, threshold=threshold)
    if query.show == "absent":
        return _absent_rows(db, uuid, meeting, threshold, query, limit)
    # Once nobody is in, live seconds are the stored seconds: filters and sorts then walk attendance_seconds.
    live = _has_open_sessions(db, uuid)
    seconds = _LIVE_SECONDS if live else "a.attended_seconds"
    where = ["a.instance_uuid = :uuid"]
    params: dict[str, Any] = {"uuid": uuid, "now": now}
    if query.search:
        where.append(_matches("p.name", "p.email"))
        params["q"] = _like(query.search)
    if query.show in ("eligible", "not-eligible"):
        params["min"] = _minimum_seconds(threshold, meeting["window_seconds"])
        where.append(f"({seconds}) {'>=' if query.show == 'eligible' else '<'} :min")
    if query.search:
        total = db.execute(f"SELECT count(*) {_JOIN} WHERE {' AND '.join(where)}", params).fetchone()[0]
    else:  # every attendance row has its people row (foreign key): count without the join
        total = db.execute(f"SELECT count(*) FROM attendance a WHERE {' AND '.join(where)}", params).fetchone()[0]
    page = ""
    if limit is not None:
        page = " LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=(query.page - 1) * limit)
    cursor = db.execute(_page_sql(query, live=live, where=" AND ".join(where), page=page), params)
    window = meeting["window_seconds"]
    attendees = [attendee_row(row, now=now, threshold=threshold, window=window) for row in cursor]
    return {"meeting": meeting, "total": total, "attendees": attendees}


_JOIN = "FROM attendance a JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key"
# SQLite's CROSS JOIN keeps people the outer loop; the join terms go into WHERE because
# PostgreSQL takes no ON after CROSS JOIN (there it is a plain join the planner orders).
_PEOPLE_FIRST = "FROM people p CROSS JOIN attendance a"
_PEOPLE_FIRST_ON = "a.instance_uuid = p.instance_uuid AND a.person_key = p.person_key"


def _page_sql(query: TableQuery, *, live: bool, where: str, page: str) -> str:
    """The SELECT of one table page (`live`: someone is still in): each sort walks an index where one gives its order."""
    way = "DESC" if query.descending else "ASC"
    select = f"SELECT {ATTENDEE_COLUMNS}, {_LIVE_SECONDS} AS live_seconds"
    if query.sort == "name":  # people_sort_name; ties (the same name) in the same direction, so one walk
        return f"{select} {_JOIN} WHERE {where} ORDER BY {_NAME} {way}, p.person_key {way}{page}"
    if query.sort == "email":  # people_sort_email
        return f"{select} {_JOIN} WHERE {where} ORDER BY {_EMAIL} {way}, {_NAME} {way}, p.person_key {way}{page}"
    if query.sort == "attended" and not live:  # attendance_seconds: the stored seconds are the live ones
        return f"{select} {_JOIN} WHERE {where} ORDER BY a.attended_seconds {way}, {_NAME}, p.person_key{page}"
    # No index gives this order: sort narrow rows (key, name, row ids), then fetch only the page's
    # rows. People first, or SQLite walks attendance_seconds and reads each wide people row for the
    # name: a live page by attended time at 20,000 people took 215 ms under load, now 55 ms.
    # NULLs (no first join, no last leave) sort as SQLite sorts them, on both databases.
    nulls = "NULLS LAST" if query.descending else "NULLS FIRST"
    pick = (
        f"SELECT {SORTS[query.sort]} AS sk, {_NAME} AS n, p.person_key AS k "
        f"{_PEOPLE_FIRST} WHERE {_PEOPLE_FIRST_ON} AND {where} ORDER BY sk {way} {nulls}, n, k{page}"
    )
    return (
        f"{select} FROM ({pick}) pg JOIN people p ON p.instance_uuid = :uuid AND p.person_key = pg.k "
        f"JOIN attendance a ON a.instance_uuid = :uuid AND a.person_key = pg.k ORDER BY pg.sk {way} {nulls}, pg.n, pg.k"
    )


def _has_open_sessions(db: Store, uuid: str) -> bool:
    """True while someone is still in the instance (their seconds grow with the clock; index attendance_open)."""
    row = db.execute(
        "SELECT 1 FROM attendance WHERE instance_uuid = ? AND open_since IS NOT NULL LIMIT 1", [uuid]
    ).fetchone()
    return row is not None


def _minimum_seconds(threshold: Threshold, window: int | None) -> float:
    """The fewest attended seconds that count as eligible (what `Threshold.eligible` checks)."""
    if threshold.min_minutes is not None:
        return threshold.min_minutes * 60
    if not window:
        return float("inf")
    lo, hi = 0, window  # Threshold.eligible is monotonic in seconds: find its edge
    while lo < hi:
        mid = (lo + hi) // 2
        if threshold.eligible(mid, window):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _absent_rows(db, uuid, meeting, threshold, query, limit) -> dict[str, Any]:
    """Registrants who never joined, as attendance rows with 0 seconds (what --include-absent adds)."""
    where = "instance_uuid = :uuid AND person_key IS NULL AND coalesce(status, 'approved') = 'approved'"
    params: dict[str, Any] = {"uuid": uuid}
    if query.search:
        where += " AND " + _matches("name", "email")
        params["q"] = _like(query.search)
    total = db.execute(f"SELECT count(*) FROM registrant_attendance WHERE {where}", params).fetchone()[0]
    column = {"name": "lower(coalesce(name, ''))", "email": "lower(coalesce(email, ''))"}.get(
        query.sort, "registrant_id"
    )
    page = ""
    if limit is not None:
        page = " LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=(query.page - 1) * limit)
    rows = db.execute(
        f"SELECT registrant_id, name, email FROM registrant_attendance WHERE {where} "
        f"ORDER BY {column} {'DESC' if query.descending else 'ASC'}, registrant_id{page}",
        params,
    ).fetchall()
    attendees = [absent_registrant(registrant_id, name, email, threshold) for registrant_id, name, email in rows]
    return {"meeting": meeting, "total": total, "attendees": attendees}


def attended_seconds(db: Store, uuid: str, *, now: int) -> list[int]:
    """Every attendee's attended seconds at `now` (the histogram's input)."""
    return [
        _live_seconds(s, open_since, now)
        for s, open_since in db.execute(
            "SELECT attended_seconds, open_since FROM attendance WHERE instance_uuid = ?", [uuid]
        )
    ]


def concurrency_curve(
    db: Store, uuid: str, meeting: dict[str, Any], *, now: int, points: int, extra: tuple[int, ...] = ()
) -> tuple[list[int], list[int]]:
    """(epoch seconds, people present) at about `points` evenly spaced times, plus the `extra` times."""
    if meeting["start_time"] is None:
        return [], []
    people: dict[str, list[tuple[int, int]]] = {}
    for key, start, end in db.execute(
        "SELECT person_key, start_time, end_time FROM attendance_sessions WHERE instance_uuid = ?", [uuid]
    ):
        people.setdefault(key, []).append((epoch_seconds(start), epoch_seconds(end) if end else OPEN))
    first = epoch_seconds(meeting["start_time"])
    last = epoch_seconds(meeting["end_time"]) if meeting["end_time"] else max(first, now)
    step = max(1, (last - first) // max(1, points))
    times = sorted(set(steps(first, last, step)) | {t for t in extra if first <= t <= last})
    return times, present_at(concurrency(people.values()), times)


def newest_webhook_at(db: Store, uuid: str) -> str | None:
    """When the newest webhook delivery of the instance was received."""
    row = db.execute(
        "SELECT received_at FROM raw_records WHERE meeting_uuid = ? AND source || '' = 'webhook' ORDER BY id DESC LIMIT 1",
        [uuid],
    ).fetchone()
    return row[0] if row else None


def eligible_counts(db: Store, thresholds: dict[str, Threshold], *, now: int) -> dict[str, int]:
    """Eligible people per instance, each under its own threshold (none given: not counted), for the meetings list."""
    counts: dict[str, int] = {}
    for uuid, seconds, open_since, window in db.execute(
        "SELECT a.instance_uuid, a.attended_seconds, a.open_since, ai.window_seconds FROM attendance a "
        "JOIN attendance_instances ai USING (instance_uuid)"
    ):
        threshold = thresholds.get(uuid)
        if (
            threshold is not None
            and threshold.given
            and threshold.eligible(_live_seconds(seconds, open_since, now), window)
        ):
            counts[uuid] = counts.get(uuid, 0) + 1
    return counts


def meeting_id_of(db: Store, uuid: str) -> str | None:
    """The meeting or webinar number of an instance."""
    row = db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [uuid]).fetchone()
    return row[0] if row else None


def has_funnel_inputs(db: Store, meeting_id: str | None) -> bool:
    """Whether a meeting has more than attendance for its record funnel: registrants, an imported list, polls or rules."""
    row = db.execute(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM registrants WHERE meeting_id = :m) "
        "OR EXISTS (SELECT 1 FROM registration_imports WHERE meeting_id = :m) "
        "OR EXISTS (SELECT 1 FROM polls WHERE meeting_id = :m) "
        "OR EXISTS (SELECT 1 FROM meeting_rules WHERE meeting_id = :m) THEN 1 ELSE 0 END",
        {"m": meeting_id},
    ).fetchone()
    return bool(row[0])


def instance_states(db: Store) -> dict[str, dict[str, Any]]:
    """Per instance: peak, whether it ended, people in it now, and its last report fetch."""
    states: dict[str, dict[str, Any]] = {}
    for uuid, peak, ended, start, end, in_meeting in db.execute(
        "SELECT instance_uuid, peak_concurrent, ended, start_time, end_time, in_meeting FROM attendance_instances"
    ):
        live = not ended and end is None and start is not None
        states[uuid] = {"peak": peak, "live": live, "in_now": in_meeting, "last_report": None}
    for uuid, status, started, completed, rows in db.execute(
        "SELECT instance_uuid, status, started_at, completed_at, rows FROM report_fetches f "
        "WHERE id = (SELECT max(id) FROM report_fetches WHERE instance_uuid = f.instance_uuid)"
    ):
        if uuid in states:
            states[uuid]["last_report"] = {"status": status, "at": completed or started, "rows": rows}
    return states


def person_story(db: Store, uuid: str, person_key: str, *, now: int) -> dict[str, Any] | None:
    """One person of an instance: identities, merged sessions and every connection behind them."""
    rows = db.execute(
        "SELECT p.identity, p.name, p.email, p.registrant_id, p.names, p.emails, p.connection_ids, "
        "a.attended_seconds, a.open_since, a.segments, a.sources, a.webhook_seconds, a.report_seconds "
        "FROM people p JOIN attendance a USING (instance_uuid, person_key) "
        "WHERE p.instance_uuid = ? AND p.person_key = ?",
        [uuid, person_key],
    ).fetchall()
    if not rows:
        return None
    identity, name, email, registrant_id, names, emails, ids, seconds, open_since, segments, sources, wh, rep = rows[0]
    names_, ids_ = json.loads(names), json.loads(ids)
    sessions = [
        {"start": start, "end": end, "seconds": secs, "open": bool(open_), "sources": _sources(srcs)}
        for start, end, secs, open_, srcs in db.execute(
            "SELECT start_time, end_time, seconds, open, sources FROM attendance_sessions "
            "WHERE instance_uuid = ? AND person_key = ? ORDER BY start_time",
            [uuid, person_key],
        )
    ]
    return {
        "person_key": person_key,
        "identity": identity,
        "name": name,
        "email": email,
        "registrant_id": registrant_id,
        "names": names_,
        "emails": json.loads(emails),
        "attended_seconds": _live_seconds(seconds, open_since, now),
        "segments": segments,
        "sources": _sources(sources),
        "webhook_seconds": wh,
        "report_seconds": rep,
        "sessions": sessions,
        "connections": _connections(db, uuid, ids_, set(names_)),
    }


def person_certificates(db: Store, meeting: str, person_key: str, email: str | None) -> list[dict[str, Any]]:
    """The person's certificates for the meeting (by person key or email), newest first, revoked ones too."""
    found = {c["number"]: c for who in (person_key, email) if who for c in certificates_of_person(db, meeting, who)}
    return sorted(found.values(), key=lambda c: c["number"], reverse=True)


def _connections(db: Store, uuid: str, ids: list[str], names: set[str]) -> list[dict[str, Any]]:
    """Webhook events and report rows of these connection ids (and, when named, these names), by time."""
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    out = []
    for raw_id, event, user_id, name, join, leave, when in db.execute(
        "SELECT raw_id, event, user_id, user_name, join_time, leave_time, date_time FROM participant_events "
        f"WHERE instance_uuid = ? AND (user_id IN ({marks}) OR participant_uuid IN ({marks})) ORDER BY raw_id",
        [uuid, *ids, *ids],
    ):
        if name and names and name not in names:
            continue  # the same per-connection id reused by someone else: not this person
        out.append(
            {
                "source": "webhook",
                "event": event,
                "connection": user_id,
                "name": name,
                "join": join,
                "leave": leave,
                "at": join or leave or when,
                "raw_id": raw_id,
            }
        )
    fetch = db.execute("SELECT report_fetch_id FROM instances WHERE instance_uuid = ?", [uuid]).fetchone()
    if fetch and fetch[0] is not None:
        for raw_id, user_id, name, join, leave, status in db.execute(
            "SELECT raw_id, user_id, name, join_time, leave_time, status FROM report_rows "
            f"WHERE instance_uuid = ? AND fetch_id = ? AND user_id IN ({marks}) ORDER BY join_time NULLS FIRST",
            [uuid, fetch[0], *ids],
        ):
            if name and names and name not in names:
                continue
            out.append(
                {
                    "source": "report",
                    "event": f"report row ({status})" if status else "report row",
                    "connection": user_id,
                    "name": name,
                    "join": join,
                    "leave": leave,
                    "at": join or leave,
                    "raw_id": raw_id,
                }
            )
    out.sort(key=lambda c: (c["at"] or "", c["source"], c["raw_id"] or 0))
    return out


def raw_record(db: Store, record_id: int) -> tuple[str, bytes] | None:
    """(source, body bytes) of one raw record, exactly as stored."""
    row = db.execute("SELECT source, body FROM raw_records WHERE id = ?", [record_id]).fetchone()
    return (row[0], bytes(row[1])) if row else None


def epoch_or_none(text: str | None) -> int | None:
    """An ISO time as epoch seconds, None stays None."""
    return epoch_seconds(text) if text else None
