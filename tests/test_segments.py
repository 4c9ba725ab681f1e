"""Connections from the evidence (issue 4): webhook join/leave pairing and report rows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from integrations.attendance.intervals import epoch_seconds
from integrations.attendance.segments import report_segments, webhook_segments

T0 = epoch_seconds("2024-05-01T10:00:00Z")


def at(minute: int, second: int = 0) -> str:
    return f"2024-05-01T{10 + minute // 60:02d}:{minute % 60:02d}:{second:02d}Z"


def join(user_id, minute, **kw):
    return {"event": "meeting.participant_joined", "user_id": user_id, "join_time": at(minute), **kw}


def leave(user_id, minute, **kw):
    return {"event": "meeting.participant_left", "user_id": user_id, "leave_time": at(minute), **kw}


def spans(segments):
    return sorted(
        (
            None if s.start is None else (s.start - T0) // 60,
            None if s.end is None else (s.end - T0) // 60,
        )
        for s in segments
    )


def test_join_and_leave_pair_by_connection_whatever_the_arrival_order():
    events = [leave("2", 50), leave("1", 20), join("2", 25), join("1", 0)]
    assert spans(webhook_segments(events)) == [(0, 20), (25, 50)]


def test_duplicate_deliveries_collapse():
    events = [join("1", 0), join("1", 0), leave("1", 30), leave("1", 30)]
    assert spans(webhook_segments(events)) == [(0, 30)]


def test_a_missing_leave_leaves_the_segment_open():
    assert spans(webhook_segments([join("1", 5)])) == [(5, None)]


def test_a_leave_without_its_join_proves_presence_but_no_time():
    assert spans(webhook_segments([leave("1", 40)])) == [(None, 40)]


def test_a_second_join_on_one_connection_closes_the_first():
    assert spans(webhook_segments([join("1", 0), join("1", 30), leave("1", 50)])) == [(0, 30), (30, 50)]


def test_webinar_left_without_leave_time_uses_the_event_time():
    event_ts = (T0 + 45 * 60) * 1000 + 999
    events = [
        {"event": "webinar.participant_joined", "user_id": "7", "join_time": at(0)},
        {"event": "webinar.participant_left", "user_id": "7", "event_ts": event_ts},
    ]
    assert spans(webhook_segments(events)) == [(0, 45)]


def test_waiting_room_events_make_no_segment():
    events = [
        {"event": "meeting.participant_joined_waiting_room", "user_id": "3", "date_time": at(0)},
        {"event": "meeting.participant_admitted", "user_id": "3", "date_time": at(5)},
        {"event": "meeting.participant_left_waiting_room", "user_id": "3", "date_time": at(5)},
        join("3", 5),
        leave("3", 40),
        {"event": "meeting.participant_joined_waiting_room", "user_id": "4", "date_time": at(0)},
    ]
    assert spans(webhook_segments(events)) == [(5, 40)]


def test_a_leave_with_only_participant_uuid_pairs_with_its_user_id():
    events = [
        join("1", 0, participant_uuid="P1"),
        {"event": "meeting.participant_left", "participant_uuid": "P1", "leave_time": at(30)},
    ]
    assert spans(webhook_segments(events)) == [(0, 30)]


def test_breakout_rooms_pair_among_themselves():
    events = [
        join("1", 0, participant_uuid="P1"),
        leave("1", 10, participant_uuid="P1"),
        {
            "event": "meeting.participant_joined_breakout_room",
            "user_id": "31",
            "participant_uuid": "P1",
            "date_time": at(10),
        },
        {
            "event": "meeting.participant_left_breakout_room",
            "user_id": "31",
            "participant_uuid": "P1",
            "leave_time": at(40),
        },
    ]
    segments = webhook_segments(events)
    assert spans(segments) == [(0, 10), (10, 40)]
    # One participant_uuid: the breakout connection is linked to the main one.
    assert set(segments[0].ids.links) & set(segments[1].ids.links)


def test_identifiers_from_every_event_of_the_connection():
    events = [join("1", 0, email="Kim@X.org", user_name="Kim"), leave("1", 30, registrant_id="R7")]
    (segment,) = webhook_segments(events)
    assert segment.ids.emails == ("kim@x.org",) and segment.ids.registrant_ids == ("R7",)


@given(st.permutations(range(6)), st.lists(st.integers(0, 5), max_size=4))
def test_pairing_is_unchanged_by_order_and_duplicates(order, repeats):
    events = [join("1", 0), leave("1", 20), join("2", 15), leave("2", 50), join("3", 55), leave("3", 59)]
    delivered = [events[i] for i in order] + [events[i] for i in repeats]
    assert spans(webhook_segments(delivered)) == [(0, 20), (15, 50), (55, 59)]


def test_report_rows_use_join_and_leave_never_duration():
    rows = [
        {"user_id": "1", "name": "A", "join_time": at(0), "leave_time": at(30), "duration": 30, "status": "in_meeting"},
        {"user_id": "2", "name": "B", "join_time": at(0), "leave_time": at(10), "status": "in_waiting_room"},
    ]
    assert spans(report_segments(rows)) == [(0, 30)]
