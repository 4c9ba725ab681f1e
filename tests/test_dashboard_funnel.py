"""The record funnel on the dashboard (issues 15 and 16): bars equal `worker.py funnel`, each opens its people,
and the meeting's stored rules are the pages' default threshold."""

from __future__ import annotations

import csv
import io
import json
import re
from html import unescape
from urllib.parse import quote

import pytest

from integrations.funnel.matching import STAGES
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator
from integrations.web.dashboard.views import STAGE_LABELS
from tests.attendance_support import Scenario
from tests.dashboard_support import dashboard_config, links, metrics, sign_in
from tests.funnel_support import PASS_PERCENT, UUID, WEBINAR, scenario
from tests.zoom_support import FakeClock, simulator_client

Q = quote(UUID, safe="")


@pytest.fixture
def config(tmp_path):
    return dashboard_config(tmp_path)


@pytest.fixture
def funnel_meeting(db, tmp_path, runner_env, client):
    """The funnel tests' 400-person webinar synced from the simulator, its list imported, rules set."""
    sc = scenario(400)
    with ZoomSimulator(sc.dataset) as sim:
        sync_meeting(db, simulator_client(sim, FakeClock()), WEBINAR)
    path = tmp_path / "registrations.csv"
    path.write_bytes(sc.csv)
    for args in (
        ["import-registrations", WEBINAR, str(path)],
        ["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", str(PASS_PERCENT)],
    ):
        assert runner_env(args).exit_code == 0
    assert sign_in(client).status_code == 302
    return sc


def cli_json(runner_env, *args: str):
    result = runner_env([*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def bars(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-funnel="([^"]+)">([^<]*)<', html))


def test_funnel_bars_equal_the_cli_and_each_opens_its_people(client, runner_env, funnel_meeting):
    instance = client.get(f"/instance?uuid={Q}").get_data(as_text=True)
    [data_url] = re.findall(r'id="funnel" data-url="([^"]+)"', instance)  # the page draws it from there
    data = client.get(unescape(data_url)).get_json()
    html = client.get(f"/funnel?uuid={Q}").get_data(as_text=True)  # the same bars, drawn on the server
    expected = cli_json(runner_env, "funnel", WEBINAR)
    assert bars(html) == {s["stage"]: str(s["count"]) for s in expected["stages"]}
    assert [(s["stage"], s["count"]) for s in data["stages"]] == [(s["stage"], s["count"]) for s in expected["stages"]]
    assert data["rules"] == expected["rules"] and [s["href"] for s in data["stages"]] == links(html, "/funnel?")
    assert [s["stage"] for s in expected["stages"]] == list(STAGES)  # list imported and pass percent: all six
    for stage_link in links(html, "/funnel?"):
        stage = re.search(r"stage=(\w+)", stage_link).group(1)
        listed = runner_env(["funnel", WEBINAR, "--stage", stage, "--format", "csv"]).output
        want = [r["email"] for r in csv.DictReader(io.StringIO(listed))]
        shown, url = [], stage_link
        while url:  # every page of the list
            page = client.get(url).get_data(as_text=True)
            shown += [unescape(e) for e in re.findall(r'<td class="email"><bdi>([^<]*)</bdi>', page)]
            following = re.search(r'rel="next" href="([^"]+)"', page)
            url = unescape(following.group(1)) if following else None
        assert sorted(shown) == sorted(want), stage


def test_stored_rules_are_the_default_threshold_and_the_page_can_override_them(client, runner_env, funnel_meeting):
    html = client.get(f"/instance?uuid={Q}").get_data(as_text=True)
    summary = cli_json(runner_env, "summary", WEBINAR)  # the stored rules apply here too
    assert metrics(html)["eligible"] == str(summary["eligible"])
    assert 'value="60"' in html and "the meeting's rules" in html
    overridden = client.get(f"/instance?uuid={Q}&min_minutes=30").get_data(as_text=True)
    thirty = cli_json(runner_env, "summary", WEBINAR, "--min-minutes", "30")
    assert metrics(overridden)["eligible"] == str(thirty["eligible"]) != str(summary["eligible"])
    expected = cli_json(runner_env, "funnel", WEBINAR, "--min-minutes", "30")
    funnel = bars(client.get(f"/funnel?uuid={Q}&min_minutes=30").get_data(as_text=True))
    assert funnel["attended"] == str(next(s["count"] for s in expected["stages"] if s["stage"] == "attended"))
    assert funnel["attended"] != bars(client.get(f"/funnel?uuid={Q}").get_data(as_text=True))["attended"]
    meetings = client.get("/").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td><a href=\"/instance.*?</tr>", meetings, re.S).group(0)
    assert re.findall(r'<td class="num">([^<]*)</td>', row)[-1] == str(summary["eligible"])


def test_a_meeting_with_attendance_only_shows_no_funnel_and_stage_names_are_checked(client, config, funnel_meeting):
    plain = Scenario(client, config, meeting_id="81200000099", uuid="plainMeeting==")
    plain.started("10:00")
    plain.joined("p1", "Pat", "10:00", email="pat@x.org")
    html = client.get("/instance?uuid=plainMeeting%3D%3D").get_data(as_text=True)
    assert metrics(html)["unique"] == "1" and 'id="funnel"' not in html and "Record funnel" not in html
    assert client.get("/instance/funnel.json?uuid=plainMeeting%3D%3D").get_json() == {"stages": []}
    assert list(STAGE_LABELS) == list(STAGES)
    assert client.get(f"/funnel?uuid={Q}&stage=nope").status_code == 400
    assert client.get(f"/funnel?uuid={Q}&stage=joined&page=0").status_code == 400
