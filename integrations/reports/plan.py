"""When to fetch an instance's report (again). Pure: datetimes in, schedule fields out.

Zoom completes large reports late and publishes no delay (NOTES.md), so each ended
instance is fetched at several delays after its end (REPORT_FETCH_DELAYS, default 30m, 2h,
24h); rows with zero duration mean "not processed yet" and earn extra fetches (issue 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from store.reports import to_iso

MAX_EXTRA_FETCHES = 2  # fetches added after the last delay while rows still look unprocessed
MAX_ATTEMPTS = 8  # failed tries of one stage before the instance is given up (visible in status)
RETRY_BASE = timedelta(minutes=5)
RETRY_CAP = timedelta(hours=6)
AUTH_RETRY = timedelta(minutes=15)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")


def parse_delays(text: str) -> tuple[timedelta, ...]:
    """`30m,2h,24h` as increasing timedeltas; ValueError saying what is wrong."""
    delays = []
    for part in (p.strip() for p in text.split(",")):
        match = _DELAY.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a delay like 30m, 2h or 1d")
        delays.append(timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)]))
    if not delays:
        raise ValueError("no delays given")
    if any(b <= a for a, b in zip(delays, delays[1:], strict=False)):
        raise ValueError("delays must increase, e.g. 30m,2h,24h")
    return tuple(delays)


def _pending(due: datetime, **fields: Any) -> dict[str, Any]:
    return {"due_at": to_iso(due), "status": "pending", "claimed_by": None, "claimed_until": None, **fields}


def _gave_up(error: str, **fields: Any) -> dict[str, Any]:
    return {
        "status": "gave_up",
        "due_at": None,
        "last_error": error,
        "claimed_by": None,
        "claimed_until": None,
        **fields,
    }


@dataclass(frozen=True)
class FetchPlan:
    """The fetches of one instance that ended at `ended_at`: one at each of `delays` after it."""

    ended_at: datetime
    delays: tuple[timedelta, ...]

    def first(self, now: datetime) -> dict[str, Any]:
        """The first planned fetch.

        Stages whose time has already passed (a worker that was down, an instance found late)
        collapse into one fetch now rather than several in a row.
        """
        passed = [i for i, delay in enumerate(self.delays) if self.ended_at + delay <= now]
        if passed:
            return {"stage": passed[-1], "due_at": to_iso(now)}
        return {"stage": 0, "due_at": to_iso(self.ended_at + self.delays[0])}

    def after_complete(self, fetched_at: datetime, *, unprocessed_rows: int, extra_fetches: int) -> dict[str, Any]:
        """Schedule fields after a complete fetch: the next stage, an extra fetch, or done."""
        upcoming = [i for i, delay in enumerate(self.delays) if self.ended_at + delay > fetched_at]
        if upcoming:
            stage = upcoming[0]
            return _pending(self.ended_at + self.delays[stage], stage=stage, attempts=0, last_error=None)
        if unprocessed_rows and extra_fetches < MAX_EXTRA_FETCHES:
            # Still zero durations after the last delay: Zoom has not finished; look again later.
            return _pending(
                fetched_at + self.delays[-1],
                stage=len(self.delays) - 1,
                attempts=0,
                extra_fetches=extra_fetches + 1,
                last_error=None,
            )
        return {
            "status": "done",
            "due_at": None,
            "attempts": 0,
            "last_error": None,
            "claimed_by": None,
            "claimed_until": None,
        }

    def after_failure(
        self, outcome: str, *, stage: int, attempts: int, now: datetime, error: str, retry_at: datetime | None = None
    ) -> dict[str, Any]:
        """Schedule fields after a failed fetch of `stage` (`attempts`: failures in a row before it).

        outcome: 'interrupted' (the worker stopped: due again now), 'rate_limited' (retry at
        `retry_at`), 'not_found' (try the next stage: right after the end Zoom may not have
        the report yet), 'too_old' (give up), 'auth' (retry later without counting: an
        operator must fix the credentials), 'transient' (bounded retries with growing waits).
        """
        error = error[:500]
        if outcome == "interrupted":
            return _pending(now, last_error=error)  # the worker stopped: pick it up at once on restart
        if outcome == "rate_limited":
            return _pending(retry_at or now + RETRY_BASE, last_error=error)
        if outcome == "auth":
            return _pending(now + AUTH_RETRY, last_error=error)
        if outcome == "too_old":
            return _gave_up(error)
        if outcome == "not_found":
            later = [i for i, delay in enumerate(self.delays) if i > stage and self.ended_at + delay > now]
            if later:
                return _pending(self.ended_at + self.delays[later[0]], stage=later[0], last_error=error)
            return _gave_up(error)
        attempts += 1
        if attempts >= MAX_ATTEMPTS:
            return _gave_up(error, attempts=attempts)
        wait = min(RETRY_CAP, RETRY_BASE * 2 ** (attempts - 1))
        return _pending(now + wait, attempts=attempts, last_error=error)
