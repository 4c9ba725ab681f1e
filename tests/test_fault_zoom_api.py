"""Zoom API faults during the scheduled report sync (issue 7), over real HTTP against the
simulator: each fault lasts past the client's retries, so the run fails the fetch with a clear
error and bounded calls, leaves no partial report marked complete, and the next scheduled run
(once Zoom behaves) completes the report."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.reports.sync import poll_reports
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from store.reports import from_iso, report_rows, schedule_row
from tests.conftest import post_event
from tests.fault_support import free_port
from tests.zoom_support import FakeClock, expected_rows, simulator_client

WEBINAR_ID = "93456789012"
UUID = "fAuLt+tEsT/Uu1d=="
END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
FIRST_RUN = END + timedelta(minutes=31)  # just past the first delay of "30m,2h,24h"
RETRIES = 3


def webinar_ended() -> dict:
    start = END - timedelta(minutes=90)
    return {
        "event": "webinar.ended",
        "event_ts": int(END.timestamp() * 1000),
        "payload": {
            "account_id": "acc",
            "object": {
                "id": WEBINAR_ID,
                "uuid": UUID,
                "host_id": "host",
                "topic": "Fault drill",
                "type": 5,
                "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_time": END.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "duration": 90,
                "timezone": "UTC",
            },
        },
    }


def run_at(db, zoom, moment: datetime):
    """One scheduled run of the report poller at `moment`."""
    return poll_reports(db, zoom, report_delays="30m,2h,24h", now=lambda: moment)


FAULTS = {
    # name: (simulator fault kind or None, options)
    "connection_refused": (None, {}),
    "read_timeout": ("slow", {"delay": 3.0}),
    "server_error": ("server_error", {}),
    "rate_limit": ("rate_limit", {"retry_after": "2"}),
    "malformed_json": ("malformed_json", {}),
    "page_token_loop": ("page_token_loop", {}),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_zoom_fault_fails_the_fetch_visibly_and_the_next_run_completes_it(client, db, fault, caplog):
    caplog.set_level(logging.WARNING)
    dataset = synthetic_webinar(700, seed=5, webinar_id=WEBINAR_ID, uuid=UUID, start=END - timedelta(minutes=90))
    pages = math.ceil(len(dataset.participants[UUID]) / 300)
    assert pages >= 3
    post_event(client, webinar_ended())
    normalize_pending(db)  # the webinar is tracked, its instance ended: a fetch is planned

    with ZoomSimulator(dataset) as sim:
        clock = FakeClock(start=FIRST_RUN)  # the client's wall clock agrees with the run's
        kind, options = FAULTS[fault]
        if kind is None:
            # Nothing listens on this port: every API call is refused (the token still works).
            broken = simulator_client(
                sim, clock, timeout=0.5, max_retries=RETRIES, api_base_url=f"http://127.0.0.1:{free_port()}/v2"
            )
        else:
            sim.add_fault("participants", kind, page=2, times=1000, **options)
            broken = simulator_client(sim, clock, timeout=0.5, max_retries=RETRIES)

        result = run_at(db, broken, FIRST_RUN)

        assert result.fetched == []
        # Bounded: the instance list and page 1 (or the refused list, retried), then page 2
        # tried 1 + RETRIES times; the client counts every attempt, answered or not.
        attempts = broken.api_calls
        assert attempts <= 2 * (1 + RETRIES), f"{attempts} calls: retries not bounded"
        fetch = db.execute("SELECT status, error, completed_at FROM report_fetches ORDER BY id DESC").fetchone()
        assert fetch[0] == "failed" and fetch[1], fetch
        warning = f"report fetch of {UUID} failed, rescheduled: "
        logged = [r.getMessage() for r in caplog.records if warning in r.getMessage()]
        assert len(logged) == 1, caplog.text
        print(f"\n{fault}: {attempts} calls; {logged[0]}")
        # No partial report: the instance has no complete fetch and shows no rows.
        assert db.execute(
            "SELECT report_complete, report_fetch_id FROM instances WHERE instance_uuid = ?", [UUID]
        ).fetchone() == (0, None)
        assert report_rows(db, UUID) == []
        due = from_iso(schedule_row(db, UUID)["due_at"])
        assert FIRST_RUN < due <= FIRST_RUN + timedelta(hours=2), due

        # Zoom recovers; the next scheduled run picks the fetch up and completes it.
        sim.faults.clear()
        healthy = simulator_client(sim, FakeClock(start=due), timeout=5, max_retries=RETRIES)
        assert run_at(db, healthy, due - timedelta(seconds=1)).fetched == []  # not before it is due
        [summary] = run_at(db, healthy, due + timedelta(seconds=1)).fetched
        assert summary.status == "complete"
        stored = report_rows(db, UUID)
        assert sorted(tuple(sorted(r.items())) for r in stored) == expected_rows(dataset, UUID)
        assert db.execute("SELECT report_complete FROM instances WHERE instance_uuid = ?", [UUID]).fetchone() == (1,)
        broken.close()
        healthy.close()
