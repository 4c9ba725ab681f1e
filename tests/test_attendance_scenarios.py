"""End to end (issue 4): signed webhooks into the real app, a report synced over HTTP from
the Zoom simulator, then the `attendance`, `summary` and `timeline` commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.attendance_support import Scenario, by_key, cli, cli_error, registrant, report_row

MEETING = "81200000001"
MEETING_UUID = "m1/Scn//a+b=="  # a `/`, a `//`, `+` and `=`, as real instance UUIDs have
WEBINAR = "91200000002"
WEBINAR_UUID = "/w1Start//x=="  # starts with `/`: Zoom's own API wants it double-encoded


def meeting_webhooks(sc: Scenario, *, lose_eves_leave: bool = True) -> None:
    """The meeting's story as Zoom's webhooks tell it (each person's case in the comments)."""
    sc.started("10:00")
    # Ann drops and rejoins: a new user_id, the same email.
    sc.joined("a1", "Ann", "10:00", email="ann@x.org")
    sc.left("a1", "Ann", "10:20", email="ann@x.org")
    sc.joined("a2", "Ann", "10:25", email="ANN@x.org")
    sc.left("a2", "Ann", "11:00", email="ann@x.org")
    # Bob's laptop and phone overlap from 10:30 to 10:50; the phone carries only his user id.
    sc.joined("b1", "Bob", "10:00", email="bob@x.org", participant_user_id="PU-bob")
    sc.joined("b2", "Bob's iPhone", "10:30", participant_user_id="PU-bob")
    sc.left("b1", "Bob", "10:50", email="bob@x.org", participant_user_id="PU-bob")
    sc.left("b2", "Bob's iPhone", "11:00", participant_user_id="PU-bob")
    # Cara waits in the waiting room from 09:55 until she is admitted at 10:05.
    sc.post(
        sc.event(
            "participant_joined_waiting_room", user_id="c1", user_name="Cara", email="cara@x.org", date_time="09:55"
        )
    )
    sc.post(sc.event("participant_admitted", user_id="c1", user_name="Cara", email="cara@x.org", date_time="10:05"))
    sc.joined("c1", "Cara", "10:05", email="cara@x.org")
    sc.left("c1", "Cara", "10:45", email="cara@x.org")
    # Dan is never admitted.
    sc.post(
        sc.event("participant_joined_waiting_room", user_id="d1", user_name="Dan", email="dan@x.org", date_time="10:10")
    )
    sc.post(
        sc.event("participant_left_waiting_room", user_id="d1", user_name="Dan", email="dan@x.org", date_time="10:20")
    )
    # Eve's leave is lost: until the report, she counts until the meeting's end.
    sc.joined("e1", "Eve", "10:00", email="eve@x.org")
    if not lose_eves_leave:
        sc.left("e1", "Eve", "10:30", email="eve@x.org")
    # Fay is in the webhooks only (the report will not list her).
    sc.joined("f1", "Fay", "10:10", email="fay@x.org")
    sc.left("f1", "Fay", "10:40", email="fay@x.org")
    # Hal is a guest without email, on two connections; another guest happens to be called Ann.
    sc.joined("h1", "Hal (guest)", "10:00")
    sc.left("h1", "Hal (guest)", "10:20")
    sc.joined("h2", "Hal (guest)", "10:30")
    sc.left("h2", "Hal (guest)", "10:40")
    sc.joined("x1", "Ann", "10:00")
    sc.left("x1", "Ann", "10:05")
    # Kim's ids arrive on some events only: email on the first join and the last leave.
    sc.joined("k1", "Kim", "10:00", email="kim@x.org")
    sc.left("k1", "Kim", "10:30")
    sc.joined("k2", "Kim", "10:35", participant_user_id="PU-kim")
    sc.left("k2", "Kim", "10:50", email="kim@x.org", participant_user_id="PU-kim")
    sc.ended("11:00")


MEETING_REPORT = [
    report_row("a1", "Ann", "10:00", "10:20", user_email="ann@x.org"),
    report_row("a2", "Ann", "10:25", "11:00", user_email="ann@x.org"),
    report_row("b1", "Bob", "10:00", "10:50", user_email="bob@x.org", participant_user_id="PU-bob"),
    report_row("b2", "Bob's iPhone", "10:30", "11:00", participant_user_id="PU-bob"),
    report_row("c1", "Cara", "09:55", "10:05", user_email="cara@x.org", status="in_waiting_room"),
    report_row("c1", "Cara", "10:05", "10:45", user_email="cara@x.org"),
    report_row("d1", "Dan", "10:10", "10:20", user_email="dan@x.org", status="in_waiting_room"),
    report_row("e1", "Eve", "10:00", "10:30", user_email="eve@x.org"),
    report_row("g1", "Gus", "10:00", "10:15", user_email="gus@x.org"),  # no webhook reached us
    report_row("h1", "Hal (guest)", "10:00", "10:20"),
    report_row("h2", "Hal (guest)", "10:30", "10:40"),
    report_row("x1", "Ann", "10:00", "10:05"),
    # Zoom hides a guest's email in reports: Kim's first row is tied to her by its connection.
    report_row("k1", "Kim", "10:00", "10:30"),
    report_row("k2", "Kim", "10:35", "10:50", participant_user_id="PU-kim"),
]


@pytest.fixture
def meeting(client, config):
    return Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)


def seconds(attendees):
    return {key: a["attended_seconds"] for key, a in by_key(attendees).items()}


def test_webhooks_alone_give_people_and_true_durations(meeting, config):
    meeting_webhooks(meeting)
    result = cli(config, "attendance", MEETING)
    assert result["meeting"]["instance_uuid"] == MEETING_UUID
    assert result["meeting"]["report_complete"] is False
    assert seconds(result["attendees"]) == {
        "email:ann@x.org": 55 * 60,  # rejoin: two connections, one person
        "email:bob@x.org": 60 * 60,  # two devices: the overlap counts once (not 80 minutes)
        "email:cara@x.org": 40 * 60,  # waiting room excluded
        "email:eve@x.org": 60 * 60,  # no leave yet: counts until the meeting ended
        "email:fay@x.org": 30 * 60,
        "name:Hal (guest)": 30 * 60,  # weak identity, grouped by exact name
        "name:Ann": 5 * 60,  # never merged with Ann by name
        "email:kim@x.org": 45 * 60,  # ids on some events only, still one person
    }
    people = by_key(result["attendees"])
    # The phone carried only Bob's participant_user_id: tied to his laptop, keyed by his email.
    assert (people["email:bob@x.org"]["identity"], people["email:bob@x.org"]["segments"]) == ("email", 2)
    assert people["name:Hal (guest)"]["identity"] == "name" and people["name:Hal (guest)"]["email"] is None
    assert people["email:ann@x.org"]["first_join"] == "2024-05-01T10:00:00Z"
    assert people["email:ann@x.org"]["last_leave"] == "2024-05-01T11:00:00Z"
    assert all(a["sources"] == ["webhook"] and not a["in_meeting"] for a in result["attendees"])


def test_the_report_fixes_a_lost_leave_and_adds_people_webhooks_missed(meeting, config):
    meeting_webhooks(meeting)
    meeting.report(MEETING_REPORT)
    result = cli(config, "attendance", MEETING_UUID)
    assert result["meeting"]["report_complete"] is True
    people = by_key(result["attendees"])
    assert seconds(result["attendees"]) == {
        "email:ann@x.org": 55 * 60,
        "email:bob@x.org": 60 * 60,
        "email:cara@x.org": 40 * 60,
        "email:eve@x.org": 30 * 60,  # the report's leave time replaces "until the end"
        "email:fay@x.org": 30 * 60,
        "email:gus@x.org": 15 * 60,  # only in the report
        "name:Hal (guest)": 30 * 60,
        "name:Ann": 5 * 60,
        "email:kim@x.org": 45 * 60,
    }
    assert people["email:fay@x.org"]["webhook_only"] is True and people["email:fay@x.org"]["sources"] == ["webhook"]
    assert people["email:gus@x.org"]["sources"] == ["report"] and not people["email:gus@x.org"]["webhook_only"]
    assert people["email:eve@x.org"]["sources"] == ["report", "webhook"]
    assert people["email:kim@x.org"]["segments"] == 2  # two report rows, not four connections


def test_summary_reconciles_webhooks_and_report(meeting, config):
    meeting_webhooks(meeting)
    meeting.report(MEETING_REPORT)
    summary = cli(config, "summary", MEETING, "--min-minutes", "45")
    assert summary["unique_attendees"] == 9
    assert summary["eligible"] == 3  # Ann 55, Bob 60 and Kim 45; Cara has 40
    assert summary["registered"] is None  # a meeting without registration
    assert summary["report_complete"] is True
    assert summary["report_rows"] == len(MEETING_REPORT)
    assert summary["webhook_events"] == 29  # every delivery of this instance, waiting room included
    assert summary["total_attended_seconds"] == (55 + 60 + 40 + 30 + 30 + 15 + 30 + 5 + 45) * 60
    assert summary["median_attended_seconds"] == 30 * 60
    # 10:10: Ann, Bob, Cara, Eve, Fay, Gus, Hal and Kim.
    assert (summary["peak_concurrent"], summary["peak_at"]) == (8, "2024-05-01T10:10:00Z")
    rec = summary["reconciliation"]
    assert [p["person_key"] for p in rec["only_in_webhooks"]] == ["email:fay@x.org"]
    assert [p["person_key"] for p in rec["only_in_report"]] == ["email:gus@x.org"]
    assert rec["durations_differ"] == [
        {"person_key": "email:eve@x.org", "name": "Eve", "webhook_seconds": 3600, "report_seconds": 1800}
    ]


def test_who_attended_at_least_60_minutes(meeting, config):
    meeting_webhooks(meeting)
    meeting.report(MEETING_REPORT)
    result = cli(config, "attendance", MEETING, "--min-minutes", "60")
    assert [a["person_key"] for a in result["attendees"] if a["eligible"]] == ["email:bob@x.org"]
    by_percent = cli(config, "attendance", MEETING, "--min-percent", "90")  # 54 of the 60 minutes
    assert sorted(a["person_key"] for a in by_percent["attendees"] if a["eligible"]) == [
        "email:ann@x.org",
        "email:bob@x.org",
    ]
    assert by_percent["meeting"]["threshold"] == {"min_percent": 90.0}


def test_timeline_counts_people_not_connections(meeting, config):
    meeting_webhooks(meeting)
    meeting.report(MEETING_REPORT)
    points = {p["time"][11:16]: p["present"] for p in cli(config, "timeline", MEETING, "--step", "300")["points"]}
    assert points["10:00"] == 7  # Ann, Bob, Eve, Gus, Hal, Kim, the guest Ann
    assert points["10:10"] == 8
    assert points["10:35"] == 6  # Bob's two devices count once
    assert points["11:00"] == 0
    assert len(points) == 13


def test_csv_and_table_outputs(meeting, config):
    meeting_webhooks(meeting)
    csv_text = cli(config, "attendance", MEETING, "--format", "csv", "--min-minutes", "60")
    header, *rows = csv_text.strip().splitlines()
    assert header.split(",")[:6] == ["person_key", "identity", "name", "email", "registrant_id", "attended_seconds"]
    assert header.endswith(",eligible") and len(rows) == 8
    table = cli(config, "attendance", MEETING, "--format", "table")
    assert "Hal (guest)" in table and "1:00:00" in table and MEETING_UUID in table


def test_unknown_meeting_is_one_clear_line(config, client):
    assert "no stored instance of meeting or webinar 999" in cli_error(config, "attendance", "999")
    assert "no stored meeting or instance" in cli_error(config, "summary", "not-a-uuid==")
    error = cli_error(config, "attendance", "1", "--min-minutes", "5", "--min-percent", "5")
    assert "either a minimum in minutes or in percent" in error


def test_latest_instance_unless_instance_is_given(client, config):
    first = Scenario(client, config, meeting_id=MEETING, uuid="first==", day="2024-05-01")
    first.started("10:00")
    first.joined("1", "Ann", "10:00", email="ann@x.org")
    first.ended("10:30")
    second = Scenario(client, config, meeting_id=MEETING, uuid="second==", day="2024-05-08")
    second.started("10:00")
    second.joined("1", "Bob", "10:00", email="bob@x.org")
    second.ended("10:10")
    assert cli(config, "attendance", MEETING)["meeting"]["instance_uuid"] == "second=="
    older = cli(config, "attendance", MEETING, "--instance", "first==")
    assert [a["person_key"] for a in older["attendees"]] == ["email:ann@x.org"]
    listing = cli(config, "meetings")["meetings"]
    assert [(m["instance_uuid"], m["people"], m["webhook_events"]) for m in listing] == [
        ("first==", 1, 3),
        ("second==", 1, 3),
    ]
    assert "belongs to meeting" in cli_error(config, "attendance", "999", "--instance", "first==")


def test_live_meeting_counts_open_connections_until_now(client, config):
    start = datetime.now(UTC) - timedelta(minutes=10)
    sc = Scenario(client, config, meeting_id=MEETING, uuid="live==", day=start.strftime("%Y-%m-%d"))
    sc.started(start.strftime("%H:%M:%S"))
    sc.joined("1", "Ann", start.strftime("%H:%M:%S"), email="ann@x.org")
    result = cli(config, "attendance", MEETING)
    (ann,) = result["attendees"]
    assert ann["in_meeting"] is True and ann["last_leave"] is None
    assert 600 <= ann["attended_seconds"] <= 600 + 120  # until now, give or take a slow machine
    assert result["meeting"]["ended"] is False and result["meeting"]["end_time"] is None


# -- a webinar with registration --------------------------------------------------------------


def webinar_webhooks(sc: Scenario) -> None:
    sc.started("10:00")
    # Ivy joins on her computer, then dials in by phone with her registrant id.
    sc.joined("i1", "Ivy", "10:00", email="ivy@x.org", registrant_id="R-ivy")
    sc.left("i1", "Ivy", "10:20", email="ivy@x.org", registrant_id="R-ivy")
    sc.joined("i2", "+1 555 0100", "10:20", registrant_id="R-ivy", phone_number="15550100")
    sc.left("i2", "+1 555 0100", "10:50", registrant_id="R-ivy", phone_number="15550100")
    # Lea joins with her email only; her webinar.participant_left carries no leave_time.
    sc.joined("l1", "Lea", "10:00", email="LEA@x.org")
    left = sc.event("participant_left", user_id="l1", user_name="Lea", email="lea@x.org")
    left["event_ts"] = 1_714_559_400_000  # 10:30:00
    sc.post(left)
    # A dial-in guest without any id.
    sc.joined("p1", "+1 555 0101", "10:10", phone_number="15550101")
    sc.left("p1", "+1 555 0101", "10:40", phone_number="15550101")
    sc.ended("11:00")


WEBINAR_REGISTRANTS = [
    registrant("R-ivy", "ivy@x.org", "Ivy", "Ng"),
    registrant("R-jo", "jo@x.org", "Jo", "Park"),  # registered, never came
    registrant("R-lea", "lea@x.org", "Lea", "Ruiz"),
    registrant("R-max", "max@x.org", "Max", "Lind", status="pending"),
]
WEBINAR_REPORT = [
    report_row("i1", "Ivy", "10:00", "10:20", user_email="ivy@x.org", registrant_id="R-ivy"),
    report_row("i2", "+1 555 0100", "10:20", "10:50", registrant_id="R-ivy"),
    report_row("l1", "Lea", "10:00", "10:30", user_email="lea@x.org"),
    report_row("p1", "+1 555 0101", "10:10", "10:40"),
]


@pytest.fixture
def webinar(client, config):
    return Scenario(client, config, meeting_id=WEBINAR, uuid=WEBINAR_UUID, kind="webinar")


def test_webinar_dial_in_registrants_and_absentees(webinar, config):
    webinar_webhooks(webinar)
    webinar.report(WEBINAR_REPORT, registrants=WEBINAR_REGISTRANTS)
    result = cli(config, "attendance", WEBINAR, "--include-absent", "--min-minutes", "30")
    people = by_key(result["attendees"])
    assert seconds(result["attendees"]) == {
        "registrant:R-ivy": 50 * 60,  # computer then phone: one person by registrant id
        "email:lea@x.org": 30 * 60,
        "name:+1 555 0101": 30 * 60,
        "registrant:R-jo": 0,  # registered, never came
    }
    assert people["registrant:R-ivy"]["identity"] == "registrant" and people["registrant:R-ivy"]["segments"] == 2
    assert people["registrant:R-ivy"]["name"] == "Ivy"  # her name, not her phone number
    assert people["email:lea@x.org"]["registrant_id"] == "R-lea"  # matched by email
    assert people["registrant:R-jo"] | {"eligible": False} == people["registrant:R-jo"]
    assert people["registrant:R-jo"]["sources"] == [] and people["registrant:R-jo"]["name"] == "Jo Park"
    assert "registrant:R-max" not in people  # pending: not registered (yet)
    summary = cli(config, "summary", WEBINAR_UUID)
    assert summary["registered"] == 3 and summary["unique_attendees"] == 3
    without = cli(config, "attendance", WEBINAR)
    assert "registrant:R-jo" not in by_key(without["attendees"])


def test_webinar_left_without_leave_time_counts_until_its_event_time(webinar, config):
    webinar_webhooks(webinar)
    people = by_key(cli(config, "attendance", WEBINAR)["attendees"])
    assert people["email:lea@x.org"]["attended_seconds"] == 30 * 60
    assert people["email:lea@x.org"]["last_leave"] == "2024-05-01T10:30:00Z"
