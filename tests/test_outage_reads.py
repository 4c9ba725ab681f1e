"""The web process's reads while the database is down (issue 19 trial): /metrics still answers
200 with the process's own counters and `attendance_database_up 0`, and /api/raw-events
answers 503 `busy` like the other read routes (SQLite locked or gone too); never a 500."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integrations.web import create_app
from store.db import close_thread_db, open_db
from store.migrations import migrate
from tests.conftest import API_TOKEN, make_config
from tests.pg_support import PgServer

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@contextlib.contextmanager
def stopped(server: PgServer) -> Iterator[None]:
    """The server stopped for the block, started again after it whatever happens."""
    server.stop("fast")
    try:
        yield
    finally:
        server.start()


def families(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


@pytest.fixture
def pg_client(pg_server, pg_url, tmp_path):
    db = open_db(pg_url)
    migrate(db)
    db.close()
    app = create_app(make_config(tmp_path, DATABASE_URL=pg_url))
    app.config["TESTING"] = True
    yield app.test_client()
    close_thread_db(pg_url)


def test_metrics_answer_200_with_database_down_while_postgresql_is_stopped(pg_server, pg_client):
    up = families(pg_client.get("/metrics").get_data(as_text=True))
    assert up["attendance_database_up"][0].value == 1
    assert "attendance_live_meetings" in up
    with stopped(pg_server):
        response = pg_client.get("/metrics")
        assert response.status_code == 200, response.get_data(as_text=True)[:2000]
        down = families(response.get_data(as_text=True))
    assert down["attendance_database_up"][0].value == 0
    # The gauges read from the database are left out rather than reported as zeros...
    assert "attendance_live_meetings" not in down and "attendance_alert_active" not in down
    # ...while the process's own counters are still there.
    assert "zoom_webhook_deliveries" in down or "http_request_duration_seconds" in down
    assert families(pg_client.get("/metrics").get_data(as_text=True))["attendance_database_up"][0].value == 1


@pytest.mark.parametrize("path", ["/api/raw-events", "/api/raw-events?format=csv&meeting=81234567890"])
def test_raw_events_answer_503_busy_while_postgresql_is_stopped(pg_server, pg_client, path):
    assert pg_client.get("/api/raw-events", headers=AUTH).status_code == 200
    with stopped(pg_server):
        response = pg_client.get(path, headers=AUTH)
        other = pg_client.get("/api/meetings", headers=AUTH)
    assert other.status_code == 503 and other.get_json()["error"] == "busy"
    assert response.status_code == 503, response.get_data(as_text=True)[:2000]
    body = response.get_json()
    assert body["error"] == "busy" and "Traceback" not in body["message"]


def test_raw_events_answer_503_busy_while_sqlite_is_locked(client, config):
    db = open_db(config.database_path)
    migrate(db)
    # Another process holding SQLite's exclusive lock (a long write, an operator's sqlite3 shell).
    db.execute("PRAGMA locking_mode=EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
    db.execute("INSERT INTO state (key, value) VALUES ('locked', '1') ON CONFLICT (key) DO NOTHING")
    try:
        response = client.get("/api/raw-events", headers=AUTH)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert response.status_code == 503, response.get_data(as_text=True)[:2000]
    assert response.get_json()["error"] == "busy"


def test_raw_events_answer_503_when_the_sqlite_file_is_gone(client, config, tmp_path):
    os.replace(config.database_path, tmp_path / "moved.db")
    os.mkdir(config.database_path)
    response = client.get("/api/raw-events", headers=AUTH)
    assert response.status_code == 503 and response.get_json()["error"] == "busy"
