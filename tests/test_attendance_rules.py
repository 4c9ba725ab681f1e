"""The attendance rules as one pure function (issue 4): windows, sources, open sessions, registrants."""

from __future__ import annotations

import pytest

from integrations.attendance.compute import InstanceFacts, compute_attendance
from integrations.attendance.intervals import epoch_seconds
from integrations.attendance.segments import report_segments, webhook_segments
from store.attendance_queries import BadQuery, Threshold


def t(hhmm: str) -> str:
    return f"2024-05-01T{hhmm}:00Z"


def s(hhmm: str) -> int:
    return epoch_seconds(t(hhmm))


def join(user_id, hhmm, **ids):
    return {"event": "meeting.participant_joined", "user_id": user_id, "join_time": t(hhmm), **ids}


def leave(user_id, hhmm, **ids):
    return {"event": "meeting.participant_left", "user_id": user_id, "leave_time": t(hhmm), **ids}


def row(user_id, name, start, end, **fields):
    return {
        "user_id": user_id,
        "name": name,
        "join_time": t(start),
        "leave_time": t(end),
        "status": "in_meeting",
        **fields,
    }


def compute(events=(), rows=(), registrants=(), **facts):
    facts = InstanceFacts(instance_uuid="u==", meeting_id="1", **facts)
    return compute_attendance(facts, webhook_segments(events), report_segments(rows), list(registrants))


def seconds(result):
    return {a["person_key"]: a["attended_seconds"] for a in result.attendance}


def test_time_outside_the_window_does_not_count():
    result = compute(
        [join("1", "09:50", email="a@x.org"), leave("1", "11:10", email="a@x.org")],
        started_at=s("10:00"),
        ended_at=s("11:00"),
    )
    assert seconds(result) == {"email:a@x.org": 3600}
    assert result.instance["window_seconds"] == 3600 and result.instance["start_time"] == t("10:00")
    # first join and last leave are what happened, the session what counted.
    assert (result.attendance[0]["first_join"], result.attendance[0]["last_leave"]) == (t("09:50"), t("11:10"))
    assert [(x["start_time"], x["end_time"]) for x in result.sessions] == [(t("10:00"), t("11:00"))]


def test_without_start_and_end_events_the_window_is_first_join_to_last_leave():
    result = compute(
        [
            join("1", "10:05", email="a@x.org"),
            leave("1", "10:35", email="a@x.org"),
            join("2", "10:20", email="b@x.org"),
            leave("2", "10:50", email="b@x.org"),
        ]
    )
    assert (result.instance["start_time"], result.instance["end_time"], result.instance["ended"]) == (
        t("10:05"),
        t("10:50"),
        0,
    )
    assert result.instance["window_seconds"] == 45 * 60


def test_a_live_meeting_has_open_sessions_and_no_end():
    result = compute(
        [
            join("1", "10:00", email="a@x.org"),
            leave("1", "10:10", email="a@x.org"),
            join("2", "10:20", email="a@x.org"),
            join("3", "10:05", email="b@x.org"),
            leave("3", "10:15", email="b@x.org"),
        ],
        started_at=s("10:00"),
    )
    ann = next(a for a in result.attendance if a["person_key"] == "email:a@x.org")
    assert (ann["attended_seconds"], ann["open_since"], ann["in_meeting"], ann["last_leave"]) == (
        600,
        t("10:20"),
        1,
        None,
    )
    assert result.instance["end_time"] is None and result.instance["in_meeting"] == 1
    open_sessions = [x for x in result.sessions if x["open"]]
    assert open_sessions == [
        {
            "instance_uuid": "u==",
            "person_key": "email:a@x.org",
            "start_time": t("10:20"),
            "end_time": None,
            "seconds": None,
            "open": 1,
            "sources": '["webhook"]',
        }
    ]
    assert (result.instance["peak_concurrent"], result.instance["peak_at"]) == (2, t("10:05"))


def test_an_open_connection_after_the_end_counts_until_the_end():
    result = compute([join("1", "10:30", email="a@x.org")], started_at=s("10:00"), ended_at=s("11:00"))
    (ann,) = result.attendance
    assert (ann["attended_seconds"], ann["in_meeting"], ann["last_leave"]) == (1800, 0, t("11:00"))


def test_a_lost_join_includes_the_person_with_no_time():
    result = compute([leave("1", "10:40", email="a@x.org")], started_at=s("10:00"), ended_at=s("11:00"))
    assert seconds(result) == {"email:a@x.org": 0}
    assert result.attendance[0]["segments"] == 1 and result.attendance[0]["first_join"] is None
    assert result.sessions == []


def test_a_complete_report_replaces_webhook_segments_and_ends_the_window():
    events = [join("1", "10:00", email="a@x.org"), join("2", "10:10", email="b@x.org")]  # no leaves, no ended event
    rows = [row("1", "A", "10:00", "10:40", user_email="a@x.org")]
    result = compute(events, rows, report_complete=True)
    assert result.instance["ended"] == 1 and result.instance["end_time"] == t("10:40")
    assert seconds(result) == {"email:a@x.org": 2400, "email:b@x.org": 1800}  # b: webhook-only, until the end
    b = next(a for a in result.attendance if a["person_key"] == "email:b@x.org")
    assert (b["webhook_only"], b["seconds_from"], b["in_meeting"]) == (1, "webhook", 0)


def test_report_rows_are_ignored_until_the_report_is_complete():
    result = compute(
        [join("1", "10:00", email="a@x.org"), leave("1", "10:30", email="a@x.org")],
        [row("1", "A", "10:00", "10:05", user_email="a@x.org")],
    )
    assert seconds(result) == {"email:a@x.org": 1800}
    assert result.attendance[0]["sources"] == '["webhook"]' and result.instance["report_rows"] == 0


def test_registrants_match_by_id_else_email_and_count_only_approved():
    registrants = [
        {"registrant_id": "R1", "email": "one@x.org", "status": "approved"},
        {"registrant_id": "R2", "email": "two@x.org", "status": "approved"},
        {"registrant_id": "R3", "email": "three@x.org", "status": "denied"},
    ]
    events = [
        join("1", "10:00", registrant_id="R1"),
        join("2", "10:00", email="TWO@x.org"),
        join("3", "10:00", email="z@x.org"),
    ]
    result = compute(events, registrants=registrants, ended_at=s("10:30"))
    matched = {
        a["person_key"]: (a["registrant_id"], a["registrant_matched"], a["registrant_match"]) for a in result.attendance
    }
    assert matched == {
        "registrant:R1": ("R1", 1, "registrant_id"),
        "email:two@x.org": ("R2", 1, "email"),
        "email:z@x.org": (None, 0, None),
    }
    assert result.instance["registered"] == 2
    assert compute(events, ended_at=s("10:30")).instance["registered"] is None  # no registrants stored: unknown


def test_an_instance_without_participants():
    result = compute(started_at=s("10:00"), ended_at=s("10:30"))
    assert (result.people, result.attendance, result.sessions) == ([], [], [])
    assert (result.instance["people"], result.instance["peak_concurrent"], result.instance["peak_at"]) == (0, 0, None)


@pytest.mark.parametrize(
    "threshold, attended, window, eligible",
    [
        (Threshold(min_minutes=60), 3599, 7200, False),
        (Threshold(min_minutes=60), 3600, 7200, True),
        (Threshold(min_minutes=0.5), 30, None, True),
        (Threshold(min_percent=75), 2699, 3600, False),
        (Threshold(min_percent=75), 2700, 3600, True),
        (Threshold(min_percent=100 / 3), 1200, 3600, True),
        (Threshold(min_percent=50), 0, None, False),
        (Threshold(), 10, 10, None),
    ],
)
def test_thresholds(threshold, attended, window, eligible):
    assert threshold.eligible(attended, window) is eligible


@pytest.mark.parametrize("kw", [{"min_minutes": 1, "min_percent": 1}, {"min_minutes": -1}, {"min_percent": 101}])
def test_thresholds_refuse_nonsense(kw):
    with pytest.raises(BadQuery):
        Threshold(**kw)
