"""Fetching polls and quiz answers (issue 16): Heavy-class pacing with an injected clock,
reshaping Zoom's shapes, and a sync that goes on when a plan has no polls."""

from __future__ import annotations

import pytest

from integrations.derived.refresh import refresh_instances
from integrations.reports.sync import sync_meeting, sync_polls
from integrations.simulator.zoom_api import ZoomSimulator
from integrations.zoom.client import HEAVY, LIGHT, MEDIUM
from integrations.zoom.polls import answer_rows, fetch_poll_definitions, fetch_poll_report, poll_to_rows
from store.derived import fingerprint, is_current
from tests.funnel_support import UUID, WEBINAR, scenario
from tests.zoom_support import FakeClock, simulator_client


def test_heavy_calls_are_paced_at_their_own_slower_rate():
    sc = scenario(20)
    clock = FakeClock()
    with ZoomSimulator(sc.dataset) as sim:
        client = simulator_client(sim, clock, requests_per_second=4, heavy_requests_per_second=1)
        client.token()
        sent: list[tuple[str, float]] = []
        client.session.hooks["response"].append(lambda r, *a, **k: sent.append((r.url, clock.monotonic())))
        fetch_poll_report(client, UUID, "webinar")  # Heavy
        fetch_poll_report(client, UUID, "webinar")  # Heavy: a whole second after the last Heavy call
        fetch_poll_definitions(client, WEBINAR, "webinar")  # Light: only the overall 0.25 s
        fetch_poll_report(client, UUID, "webinar")  # Heavy again: one second after the second
    times = [round(t, 6) for _, t in sent]
    assert [round(b - a, 6) for a, b in zip(times, times[1:], strict=False)] == [1.0, 0.25, 0.75]
    assert "report/webinars" in sent[0][0] and "/webinars/93000000001/polls" in sent[2][0]


def test_heavy_pace_defaults_to_half_the_overall_rate():
    with ZoomSimulator() as sim:
        client = simulator_client(sim, FakeClock(), requests_per_second=10)
    assert client.heavy_interval == pytest.approx(0.2) and client.min_interval == pytest.approx(0.1)
    with pytest.raises(ValueError):
        client.get("report/webinars/1/polls", rate_class="extreme")
    assert {LIGHT, MEDIUM, HEAVY} == {"light", "medium", "heavy"}


def test_poll_shapes_become_rows():
    poll, questions = poll_to_rows(
        {
            "id": "p1",
            "poll_type": 3,
            "title": "Quiz",
            "questions": [{"name": " Q? ", "type": "multiple", "answers": ["a", "b"], "right_answers": ["a", "b"]}],
        },
        "123",
    )
    assert poll == {
        "meeting_id": "123",
        "poll_id": "p1",
        "title": "Quiz",
        "poll_type": 3,
        "anonymous": 0,
        "status": None,
    }
    assert questions[0]["question"] == "Q?" and questions[0]["right_answers"] == '["a", "b"]'
    assert poll_to_rows({"title": "no id"}, "123") == (None, [])
    rows = answer_rows(
        [
            {
                "name": "Anonymous Attendee",
                "email": "",
                "question_details": [{"polling_id": "p1", "question": "Q?", "answer": "a"}],
            },
            {"name": "Bo", "email": " bo@x.org ", "question_details": "not a list"},
            {
                "name": "Cy",
                "email": "cy@x.org",
                "question_details": [
                    {"polling_id": "p1", "question": "Q?", "answer": "b", "date_time": "2026-01-01T10:00:00.5Z"}
                ],
            },
        ]
    )
    assert [(r["entry"], r["anonymous"], r["email"]) for r in rows] == [(0, 1, None), (2, 0, "cy@x.org")]
    assert rows[1]["date_time"] == "2026-01-01T10:00:00.500000Z"


def test_sync_goes_on_when_polls_are_not_available(db):
    sc = scenario(30)
    with ZoomSimulator(sc.dataset) as sim:
        client = simulator_client(sim, FakeClock())
        sim.add_fault("poll_definitions", "not_found")
        sim.add_fault("polls", "too_old")
        result = sync_polls(db, client, WEBINAR, "webinar", [UUID])
    assert [what for what, _ in result.failures] == [f"polls of {WEBINAR}", f"poll report of {UUID}"]
    assert result.answers == 0


def test_a_new_poll_report_leaves_the_attendance_fingerprint_alone(db):
    """Poll pages are filed under the meeting number: answers change no attendance, so they
    must not make a 20,000-person instance's attendance look stale (store/derived.py)."""
    sc = scenario(30)
    with ZoomSimulator(sc.dataset) as sim:
        client = simulator_client(sim, FakeClock())
        sync_meeting(db, client, WEBINAR)
        refresh_instances(db, [UUID])
        before = fingerprint(db, UUID)
        sc.dataset.poll_reports[UUID].append({"name": "Anonymous Attendee", "email": "", "question_details": []})
        result = sync_polls(db, client, WEBINAR, "webinar", [UUID])
    assert result.instances == 1 and fingerprint(db, UUID) == before and is_current(db, UUID)
    assert db.execute("SELECT count(*) FROM raw_records WHERE url LIKE '%/report/webinars/%/polls'").fetchone()[0] == 2
