"""GET /api/raw-events: the raw join log over HTTP, streamed, behind the bearer token (issue 5)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from integrations.web import create_app
from integrations.zoom.rawlog import JSONL_COLUMNS, RAW_LOG_COLUMNS
from tests.audit_support import (
    INSTANCE,
    OTHER_INSTANCE,
    joined,
    jsonl,
    report_page,
    report_row,
    run_worker,
    store_report_page,
)
from tests.conftest import API_TOKEN, make_config, post_event

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def stored(client, db):
    bodies = [
        json.dumps(joined(n, instance=INSTANCE if n % 2 else OTHER_INSTANCE), indent=1).encode() for n in range(6)
    ]
    for body in bodies:
        assert post_event(client, body).status_code == 200
    store_report_page(db, report_page([report_row(1), report_row(2, name="@evil")]))
    return bodies


def test_raw_events_need_the_bearer_token(client, stored):
    assert client.get("/api/raw-events").status_code == 401
    assert client.get("/api/raw-events", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_raw_events_are_off_without_an_api_token(tmp_path):
    app = create_app(make_config(tmp_path, API_TOKEN=None))
    response = app.test_client().get("/api/raw-events", headers=AUTH)
    assert response.status_code == 503
    assert response.json["error"] == "api_disabled"


def test_raw_events_stream_jsonl_like_the_cli(client, config, stored):
    response = client.get("/api/raw-events", headers=AUTH)
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "application/x-ndjson"
    lines = jsonl(response.get_data())
    assert all(tuple(line) == JSONL_COLUMNS for line in lines)
    assert [line["raw"].encode() for line in lines if line["source"] == "webhook"] == stored
    assert response.get_data() == run_worker("export-raw", "--database", config.database_path).stdout


def test_raw_events_filter_by_meeting_and_time(client, stored):
    lines = jsonl(client.get(f"/api/raw-events?meeting={INSTANCE.replace('=', '%3D')}", headers=AUTH).get_data())
    assert [(line["record_id"], line["item"]) for line in lines] == [(2, None), (4, None), (6, None), (7, 0), (7, 1)]
    spaced = client.get("/api/raw-events?meeting=812%203456%207890", headers=AUTH).get_data()
    assert spaced == client.get("/api/raw-events?meeting=81234567890", headers=AUTH).get_data()
    assert len(jsonl(spaced)) == 6  # the meeting number as people write it: every webhook of both instances
    assert jsonl(client.get("/api/raw-events?since=2999-01-01", headers=AUTH).get_data()) == []
    assert len(jsonl(client.get("/api/raw-events?until=2999-01-01T00:00:00Z", headers=AUTH).get_data())) == 8


def test_raw_events_csv(client, stored):
    response = client.get("/api/raw-events?format=csv", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True), newline="")))
    assert tuple(rows[0]) == RAW_LOG_COLUMNS
    assert [row["user_name"] for row in rows if row["source"] == "report"] == ["Reported 1", "'@evil"]


@pytest.mark.parametrize(
    ("query", "code"),
    [("format=xml", "bad_format"), ("since=tomorrow", "bad_since"), ("until=2024-13-01", "bad_until")],
)
def test_raw_events_refuse_bad_parameters(client, stored, query, code):
    response = client.get(f"/api/raw-events?{query}", headers=AUTH)
    assert response.status_code == 400
    assert response.json["error"] == code
