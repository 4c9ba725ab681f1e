"""Interval arithmetic for attendance: union, clipping, concurrency. Pure: plain ints only.

Intervals are half-open `(start, end)` pairs of whole epoch seconds; `OPEN` ends an
interval that has no end yet (still in a live meeting)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

OPEN = 1 << 62  # later than any real time; an interval ending here is still open

Interval = tuple[int, int]


_DAYS: dict[str, int] = {}  # "YYYY-MM-DD" -> epoch seconds of its midnight (UTC)
_DATES: dict[int, str] = {}  # day number -> "YYYY-MM-DD"


def epoch_seconds(value: str) -> int:
    """A UTC ISO 8601 time (`...Z`, maybe fractional) as whole epoch seconds, truncated.

    Raises ValueError for text that is not such a time.
    """
    # Fast path for the canonical form every stored time has (200,000 of them per refresh).
    if (
        len(value) >= 20
        and value[-1] == "Z"
        and value[10] == "T"
        and value[13] == ":"
        and value[16] == ":"
        and value[19] in ".Z"
    ):
        day = _DAYS.get(value[:10])
        if day is None:
            if len(_DAYS) > 10_000:
                _DAYS.clear()
            day = _DAYS[value[:10]] = int(datetime.fromisoformat(value[:10]).replace(tzinfo=UTC).timestamp())
        h, m, s = value[11:13], value[14:16], value[17:19]
        if h.isdigit() and m.isdigit() and s.isdigit() and int(h) < 24 and int(m) < 60 and int(s) < 60:
            return day + int(h) * 3600 + int(m) * 60 + int(s)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() // 1)


def iso_time(seconds: int | None) -> str | None:
    """Whole epoch seconds as UTC ISO 8601 with `Z` (None stays None)."""
    if seconds is None or seconds >= OPEN:
        return None
    day, rest = divmod(seconds, 86400)
    date = _DATES.get(day)
    if date is None:
        if len(_DATES) > 10_000:
            _DATES.clear()
        date = _DATES[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d")
    hours, rest = divmod(rest, 3600)
    return f"{date}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge overlapping or touching intervals; drops empty ones; sorted by start."""
    merged: list[list[int]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(s, e) for s, e in merged]


def clip(intervals: Iterable[Interval], start: int | None, end: int | None) -> list[Interval]:
    """Intervals cut to the window [start, end) (None: unbounded on that side); empty ones dropped."""
    lo = start if start is not None else -OPEN
    hi = end if end is not None else OPEN
    out = []
    for s, e in intervals:
        s, e = max(s, lo), min(e, hi)
        if e > s:
            out.append((s, e))
    return out


def length(intervals: Iterable[Interval]) -> int:
    """Total seconds covered by already-disjoint intervals (open ones excluded)."""
    return sum(e - s for s, e in intervals if e < OPEN)


def union_length(intervals: Iterable[Interval], start: int | None = None, end: int | None = None) -> int:
    """Seconds covered by the union of `intervals` inside the window [start, end)."""
    return length(union(clip(intervals, start, end)))


def concurrency(unions: Iterable[Sequence[Interval]]) -> list[tuple[int, int]]:
    """The step curve of how many people are present: [(time, count from then on), ...].

    Each item of `unions` is one person's disjoint intervals, so a person counts once.
    """
    changes: dict[int, int] = {}
    for intervals in unions:
        for s, e in intervals:
            changes[s] = changes.get(s, 0) + 1
            if e < OPEN:
                changes[e] = changes.get(e, 0) - 1
    curve = []
    present = 0
    for t in sorted(changes):
        if changes[t]:
            present += changes[t]
            curve.append((t, present))
    return curve


def peak(curve: Sequence[tuple[int, int]]) -> tuple[int, int | None]:
    """The highest count of a concurrency curve and the first time it was reached."""
    best, at = 0, None
    for t, count in curve:
        if count > best:
            best, at = count, t
    return best, at


def present_at(curve: Sequence[tuple[int, int]], times: Iterable[int]) -> list[int]:
    """How many people the curve says were present at each of `times`."""
    starts = [t for t, _ in curve]
    out = []
    for t in times:
        i = bisect.bisect_right(starts, t)
        out.append(curve[i - 1][1] if i else 0)
    return out


def steps(start: int, end: int, step: int) -> range:
    """Sample times from `start` to `end` inclusive, every `step` seconds."""
    if step <= 0:
        raise ValueError("step must be positive")
    return range(start, end + 1, step)
