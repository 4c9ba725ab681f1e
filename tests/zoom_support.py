"""Helpers for the report-poller tests: a clock that sleeps instantly, clients for the simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.simulator.zoom_api import ClientSettings, Dataset, ZoomSimulator
from integrations.zoom.client import ZoomClient
from integrations.zoom.reports import participant_to_row

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class FakeClock:
    """Monotonic and wall time that only move when the client sleeps (or a test says so)."""

    def __init__(self, start: datetime = T0):
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.elapsed += seconds

    def monotonic(self) -> float:
        return self.elapsed

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


def simulator_client(sim: ZoomSimulator, clock: FakeClock | None = None, **overrides: Any) -> ZoomClient:
    """A ZoomClient for `sim` that never really waits (unless a real clock is asked for)."""
    options: dict[str, Any] = {
        "requests_per_second": 0,
        "max_retries": 3,
        "timeout": 5.0,
        "rand": lambda: 0.5,
    }
    if clock is not None:
        options.update(sleep=clock.sleep, monotonic=clock.monotonic, now=clock.now)
    options.update(overrides)
    settings = sim.client_settings() | {k: options.pop(k) for k in ClientSettings.__annotations__ if k in options}
    return ZoomClient(**settings, **options)


def meeting_dataset(
    uuid: str, rows: int, *, meeting_id: str = "81234567890", kind: str = "meeting", start: str = "2026-03-01T09:00:00Z"
) -> Dataset:
    """A meeting or webinar with one instance and `rows` distinct report rows."""
    dataset = Dataset()
    dataset.add_meeting(meeting_id, kind)
    dataset.add_instance(meeting_id, uuid, start, [report_row(i) for i in range(rows)])
    return dataset


def report_row(i: int, *, duration: int | None = None) -> dict[str, Any]:
    """One participant report row in Zoom's shape, distinct for each i."""
    seconds = 600 + i if duration is None else duration
    join = datetime(2026, 3, 1, 9, 0, tzinfo=UTC) + timedelta(seconds=i)
    return {
        "id": "",
        "user_id": str(16778240 + i),
        "name": f"Person {i}",
        "user_email": f"person{i}@example.org" if i % 7 else "",
        "registrant_id": f"reg{i:05d}" if i % 5 else "",
        "participant_user_id": "",
        "join_time": join.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "leave_time": (join + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration": seconds,
        "failover": False,
        "status": "in_meeting",
        "customer_key": "",
        "bo_mtg_id": "",
    }


def expected_rows(dataset: Dataset, uuid: str) -> list[tuple]:
    """The report rows the store should hold for `uuid`, as sorted comparable tuples."""
    return sorted(tuple(sorted(participant_to_row(p).items())) for p in dataset.participants[uuid])


def stored_rows(rows: list[dict[str, Any]]) -> list[tuple]:
    return sorted(tuple(sorted(r.items())) for r in rows)
