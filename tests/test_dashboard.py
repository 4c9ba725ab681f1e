"""Dashboard (issue 15) through the Flask test client: sign-in, pages, JSON, downloads, hostile names."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from integrations.attendance.intervals import epoch_seconds
from integrations.reads.formats import neutralize_cell
from integrations.web import create_app
from integrations.web.dashboard.views import _lanes
from tests.attendance_support import Scenario, cli
from tests.conftest import API_TOKEN
from tests.dashboard_support import (
    HOSTILE_NAMES,
    csrf_from,
    dashboard_config,
    links,
    metrics,
    sign_in,
)
from tests.test_attendance_scenarios import WEBINAR, WEBINAR_REGISTRANTS, WEBINAR_REPORT, WEBINAR_UUID, webinar_webhooks

TEMPLATES = Path(__file__).resolve().parents[1] / "integrations" / "web" / "dashboard" / "templates"
Q = quote(WEBINAR_UUID, safe="")


@pytest.fixture
def dash_config(tmp_path):
    return dashboard_config(tmp_path)


@pytest.fixture
def dash(dash_config):
    app = create_app(dash_config)
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def webinar(dash, dash_config):
    sc = Scenario(dash, dash_config, meeting_id=WEBINAR, uuid=WEBINAR_UUID, kind="webinar")
    webinar_webhooks(sc)
    sc.report(WEBINAR_REPORT, registrants=WEBINAR_REGISTRANTS)
    return sc


@pytest.fixture
def signed(dash, webinar):
    assert sign_in(dash).status_code == 302
    return dash


PAGES = [
    "/",
    f"/instance?uuid={Q}",
    f"/instance/data.json?uuid={Q}",
    f"/attendance?uuid={Q}",
    f"/attendance.csv?uuid={Q}",
    f"/attendance.jsonl?uuid={Q}",
    f"/person?uuid={Q}&key=registrant:R-ivy",
    "/raw/1.json",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_login_and_shows_no_data(dash, webinar, path):
    response = dash.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert b"Ivy" not in response.data and b"ivy@x.org" not in response.data  # a redirect, never data


def test_dashboard_is_off_without_a_secret_key_and_the_api_still_answers(tmp_path):
    config = dashboard_config(tmp_path, SECRET_KEY="")
    client = create_app(config).test_client()
    response = client.get("/")
    assert response.status_code == 503
    assert b"set SECRET_KEY" in response.data
    assert client.get("/login").status_code == 503
    api = client.get("/api/meetings", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert api.status_code == 200


def test_login_needs_the_csrf_token_and_the_api_token(dash):
    page = dash.get("/login").get_data(as_text=True)
    assert 'type="password"' in page
    token = csrf_from(page)
    assert dash.post("/login", data={"password": API_TOKEN}).status_code == 400
    assert dash.post("/login", data={"password": "nope", "csrf_token": token}).status_code == 401
    assert dash.get("/").status_code == 302
    ok = dash.post("/login", data={"password": API_TOKEN, "csrf_token": token})
    assert ok.status_code == 302 and ok.headers["Location"] == "/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert dash.get("/").status_code == 200


def test_session_cookie_is_secure_over_https(dash_config):
    client = create_app(dash_config).test_client()
    page = client.get("/login", base_url="https://localhost").get_data(as_text=True)
    response = client.post(
        "/login", data={"password": API_TOKEN, "csrf_token": csrf_from(page)}, base_url="https://localhost"
    )
    assert "Secure" in response.headers["Set-Cookie"]


def test_forwarded_proto_counts_only_with_trust_proxy_headers(tmp_path):
    for trust, secure in (("0", False), ("1", True)):
        client = create_app(dashboard_config(tmp_path, TRUST_PROXY_HEADERS=trust)).test_client()
        headers = {"X-Forwarded-Proto": "https"}
        page = client.get("/login", headers=headers).get_data(as_text=True)
        response = client.post("/login", data={"password": API_TOKEN, "csrf_token": csrf_from(page)}, headers=headers)
        assert ("Secure" in response.headers["Set-Cookie"]) is secure


def test_sign_in_goes_back_only_to_a_page_of_this_site(dash):
    page = dash.get("/login?next=//evil.example/x").get_data(as_text=True)
    response = dash.post(
        "/login", data={"password": API_TOKEN, "csrf_token": csrf_from(page), "next": "//evil.example/x"}
    )
    assert response.headers["Location"] == "/"
    dash.post("/logout", data={"csrf_token": csrf_from(dash.get("/").get_data(as_text=True))})
    page = dash.get("/login").get_data(as_text=True)
    response = dash.post(
        "/login", data={"password": API_TOKEN, "csrf_token": csrf_from(page), "next": "/attendance?x=1"}
    )
    assert response.headers["Location"] == "/attendance?x=1"


def test_sign_out_needs_the_csrf_token_and_ends_the_session(signed):
    assert signed.post("/logout").status_code == 400
    assert signed.get("/").status_code == 200
    token = csrf_from(signed.get("/").get_data(as_text=True))
    assert signed.post("/logout", data={"csrf_token": token}).status_code == 302
    assert signed.get("/").status_code == 302


def test_a_new_api_token_signs_everyone_out(dash_config, tmp_path):
    client = create_app(dash_config).test_client()
    sign_in(client)
    assert client.get("/").status_code == 200
    client.application.config["SETTINGS"] = dashboard_config(
        tmp_path, API_TOKEN="rotated-token-of-at-least-32-characters"
    )
    assert client.get("/").status_code == 302


def test_every_answer_carries_a_strict_content_security_policy(signed):
    for path in ("/login", "/", f"/instance?uuid={Q}", "/dashboard/static/instance.js"):
        response = signed.get(path)
        csp = response.headers["Content-Security-Policy"]
        response.close()
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp


def test_templates_have_no_inline_scripts_or_styles_and_extend_one_base():
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert "style=" not in text and "<style" not in text and " on" + "click=" not in text, template.name
        assert "|safe" not in text, template.name
        if template.name != "base.html" and not template.name.startswith("_"):  # _name.html: macros
            assert text.startswith('{% extends "base.html" %}'), template.name


def test_meetings_page_lists_the_instance_with_its_sources(signed):
    html = signed.get("/?min_minutes=30").get_data(as_text=True)
    [link] = links(html, "/instance?")
    assert unquote(link) == f"/instance?uuid={WEBINAR_UUID}&min_minutes=30.0"
    assert "complete" in html and "ended" in html
    row = re.search(r"<tr>\s*<td><a href=\"/instance.*?</tr>", html, re.S).group(0)
    numbers = re.findall(r'<td class="num">([^<]*)</td>', row)
    summary = cli(signed.application.config["SETTINGS"], "summary", WEBINAR, "--min-minutes", "30", "--format", "json")
    assert numbers == [str(summary["unique_attendees"]), str(summary["peak_concurrent"]), str(summary["eligible"])]


def test_instance_numbers_equal_the_cli_summary(signed):
    config = signed.application.config["SETTINGS"]
    html = signed.get(f"/instance?uuid={Q}&min_minutes=30").get_data(as_text=True)
    summary = cli(config, "summary", WEBINAR, "--min-minutes", "30", "--format", "json")
    assert metrics(html) == {
        "in-now": str(summary["meeting"]["people_in_meeting"]),
        "peak": str(summary["peak_concurrent"]),
        "unique": str(summary["unique_attendees"]),
        "eligible": str(summary["eligible"]),
        "attended-minutes-median": f"{summary['median_attended_seconds'] / 60:g}",
    }
    assert metrics(html)["unique"] == "3" and metrics(html)["eligible"] == "3"


def test_instance_data_json_has_the_curve_with_its_peak_and_the_histogram(signed):
    config = signed.application.config["SETTINGS"]
    data = signed.get(f"/instance/data.json?uuid={Q}&min_minutes=25").get_json()
    summary = cli(config, "summary", WEBINAR, "--min-minutes", "25", "--format", "json")
    assert data["metrics"]["eligible"] == summary["eligible"]
    assert data["peak"]["present"] == summary["peak_concurrent"] == max(data["curve"]["present"])
    assert data["peak"]["time"] in data["curve"]["times"]
    assert data["curve"]["times"] == sorted(data["curve"]["times"])
    assert sum(data["histogram"]["counts"]) == summary["unique_attendees"]
    assert data["threshold_minutes"] == 25
    assert data["live"] is False and data["newest_delivery_age_seconds"] >= 0
    assert data["reconciliation"] == {k: len(v) for k, v in summary["reconciliation"].items()}


def test_bad_threshold_is_a_400_page_not_a_traceback(signed):
    response = signed.get(f"/instance?uuid={Q}&min_minutes=abc")
    assert response.status_code == 400 and b"min_minutes must be a number" in response.data
    assert signed.get("/instance?uuid=nope").status_code == 404
    assert signed.get(f"/attendance?uuid={Q}&show=eligible").status_code == 400
    assert signed.get(f"/attendance?uuid={Q}&sort=drop").status_code == 400


def _names(html: str) -> list[str]:
    return re.findall(r'<td class="name">(?:<a [^>]*>)?<bdi>([^<]*)</bdi>', html)


def test_attendance_table_searches_filters_and_sorts(signed):
    base = f"/attendance?uuid={Q}&min_minutes=40"
    html = signed.get(base).get_data(as_text=True)
    assert 'type="search"' in html
    assert _names(html) == ["Ivy", "+1 555 0101", "Lea"]  # longest first, as the CLI
    assert _names(signed.get(base + "&q=LEA%40x").get_data(as_text=True)) == ["Lea"]
    assert _names(signed.get(base + "&show=eligible").get_data(as_text=True)) == ["Ivy"]
    assert _names(signed.get(base + "&show=not-eligible").get_data(as_text=True)) == ["+1 555 0101", "Lea"]
    assert _names(signed.get(base + "&show=absent").get_data(as_text=True)) == ["Jo Park"]
    assert _names(signed.get(base + "&sort=name&dir=asc").get_data(as_text=True)) == ["+1 555 0101", "Ivy", "Lea"]
    assert signed.get(base + "&q=50%25").status_code == 200  # LIKE wildcards are literal


def test_attendance_table_is_paged_on_the_server(signed, webinar):
    for i in range(60):
        webinar.joined(f"x{i}", f"Extra {i:02d}", "10:30", email=f"extra{i}@x.org")
    html = signed.get(f"/attendance?uuid={Q}&sort=name&dir=asc").get_data(as_text=True)
    assert len(_names(html)) == 50 and "page 1 of 2" in html
    second = signed.get(links(html, "/attendance?")[-1]).get_data(as_text=True)
    assert len(_names(second)) == 13 and "page 2 of 2" in second


def test_downloads_hold_exactly_the_rows_shown_in_the_clis_format(signed):
    config = signed.application.config["SETTINGS"]
    html = signed.get(f"/attendance?uuid={Q}&min_minutes=40&show=not-eligible").get_data(as_text=True)
    [csv_link] = links(html, "/attendance.csv")
    [jsonl_link] = links(html, "/attendance.jsonl")
    rows = list(csv.DictReader(io.StringIO(signed.get(csv_link).get_data(as_text=True))))
    assert [r["name"] for r in rows] == [neutralize_cell(n) for n in _names(html)] == ["'+1 555 0101", "Lea"]
    cli_csv = cli(config, "attendance", WEBINAR, "--min-minutes", "40", "--format", "csv")
    cli_rows = [r for r in csv.DictReader(io.StringIO(cli_csv)) if r["eligible"] == "false"]
    assert rows == cli_rows
    lines = [json.loads(line) for line in signed.get(jsonl_link).get_data(as_text=True).splitlines()]
    cli_json = cli(config, "attendance", WEBINAR, "--min-minutes", "40", "--format", "json")
    assert lines == [a for a in cli_json["attendees"] if not a["eligible"]]


def test_person_page_shows_sessions_connections_sources_and_raw_records(signed, dash_config):
    html = signed.get(f"/person?uuid={Q}&key=registrant:R-ivy").get_data(as_text=True)
    assert "Merged sessions (1)" in html  # 10:00-10:20 on the computer, 10:20-10:50 by phone
    sources = re.findall(r"<tr><td>(webhook|report)</td>", html)
    assert sorted(sources) == ["report", "report", "webhook", "webhook", "webhook", "webhook"]
    raw_links = links(html, "/raw/")
    assert len(raw_links) == 6
    body = signed.get(raw_links[-1])
    assert body.status_code == 200 and body.mimetype == "application/json"
    record_id = int(re.search(r"/raw/(\d+)", raw_links[-1]).group(1))
    from store.db import open_db

    db = open_db(dash_config.database_path)
    assert body.data == bytes(db.execute("SELECT body FROM raw_records WHERE id = ?", [record_id]).fetchone()[0])
    db.close()
    assert signed.get(f"/person?uuid={Q}&key=nobody").status_code == 404


def test_hostile_display_names_are_text_everywhere(signed, webinar):
    for i, name in enumerate(HOSTILE_NAMES):
        webinar.joined(f"h{i}", name, "10:05", email=f"h{i}@x.org")
        webinar.left(f"h{i}", name, "10:45", email=f"h{i}@x.org")
    html = signed.get(f"/attendance?uuid={Q}&q=%40x.org").get_data(as_text=True)
    assert "<script>window.hostile" not in html
    assert "&lt;script&gt;window.hostile=1&lt;/script&gt;" in html
    assert "L" * 300 in html and "\u202eevil\u202c name" in html
    person = links(html, "/person?")
    for url in person:
        page = signed.get(url).get_data(as_text=True)
        assert "<script>window" not in page
    exported = signed.get(f"/attendance.csv?uuid={Q}&q=h1%40x.org").get_data(as_text=True)
    assert "'=cmd|" in exported  # the CLI's spreadsheet neutralization


def test_person_time_line_bars_cover_the_window_and_open_connections_run_until_now():
    # 10:00-11:00 window; a session 10:00-10:30; webhook connection c1 10:00-10:30 (two events)
    # and c2 joined at 10:45 only (still in: until now, 11:00); a report row from 10:15 without a leave.
    t = "2024-05-01T{}:00Z".format
    story = {
        "sessions": [{"start": t("10:00"), "end": t("10:30")}],
        "connections": [
            {"source": "webhook", "connection": "c1", "join": t("10:00"), "leave": None},
            {"source": "webhook", "connection": "c1", "join": None, "leave": t("10:30")},
            {"source": "webhook", "connection": "c2", "join": t("10:45"), "leave": None},
            {"source": "report", "connection": "c1", "join": t("10:15"), "leave": None},
        ],
    }
    now = epoch_seconds(t("11:00"))
    lanes = _lanes(story, {"start_time": t("10:00"), "end_time": None}, now)
    assert (lanes["first"], lanes["last"]) == (epoch_seconds(t("10:00")), now)
    assert lanes["sessions"] == [{"x": 0.0, "w": 50.0}]
    assert lanes["webhook"] == [{"x": 0.0, "w": 50.0}, {"x": 75.0, "w": 25.0}]
    assert lanes["report"] == [{"x": 25.0, "w": 75.0}]


def test_threshold_in_percent_gives_the_clis_numbers_and_travels_with_the_links(signed):
    config = signed.application.config["SETTINGS"]
    html = signed.get(f"/instance?uuid={Q}&min_percent=50").get_data(as_text=True)
    summary = cli(config, "summary", WEBINAR, "--min-percent", "50", "--format", "json")
    assert metrics(html)["eligible"] == str(summary["eligible"])
    assert 'id="min_percent" name="min_percent"' in html and 'value="50"' in html
    assert all("min_percent=50.0" in link for link in links(html, "/attendance?"))
    data = signed.get(f"/instance/data.json?uuid={Q}&min_percent=50").get_json()
    assert data["threshold"] == {"min_percent": 50.0}
    assert data["threshold_minutes"] == summary["meeting"]["window_seconds"] / 2 / 60
    table = signed.get(f"/attendance?uuid={Q}&min_percent=50&show=eligible").get_data(as_text=True)
    attendance = cli(config, "attendance", WEBINAR, "--min-percent", "50", "--format", "json")
    assert _names(table) == [a["name"] for a in attendance["attendees"] if a["eligible"]]
    meetings = signed.get("/?min_percent=50").get_data(as_text=True)
    assert all("min_percent=50.0" in link for link in links(meetings, "/instance?"))


@pytest.mark.parametrize("query", ["min_minutes=10&min_percent=50", "min_percent=101", "min_percent=nan"])
def test_a_threshold_given_twice_or_out_of_range_is_a_400_page(signed, query):
    response = signed.get(f"/instance?uuid={Q}&{query}")
    assert response.status_code == 400 and b"<title>" in response.data


def test_people_seen_by_one_source_only_are_listed_on_the_instance_page(signed, webinar):
    # Regression (issue 15): a reconciliation row without the other source's seconds raised a 500.
    webinar.joined("late1", "Late Webhook", "10:40", email="late@x.org")
    html = signed.get(f"/instance?uuid={Q}").get_data(as_text=True)
    summary = cli(signed.application.config["SETTINGS"], "summary", WEBINAR, "--format", "json")
    assert summary["reconciliation"]["only_in_webhooks"]
    assert f"Only in webhooks ({len(summary['reconciliation']['only_in_webhooks'])})" in html
    assert "Late Webhook" in html
