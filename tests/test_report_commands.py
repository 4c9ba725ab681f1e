"""`worker.py track / sync / get / poll-status` against the simulator (issue 3)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from store.db import open_db
from tests.zoom_support import meeting_dataset
from worker import cli

WEBINAR_ID = "91234567890"
UUID = "Bznyg8KZTdCVbQxvS/oZ7w=="
ZOOM_VARIABLES = (
    "ZOOM_ACCOUNT_ID",
    "ZOOM_CLIENT_ID",
    "ZOOM_CLIENT_SECRET",
    "ZOOM_API_BASE_URL",
    "ZOOM_OAUTH_TOKEN_URL",
)


@pytest.fixture
def webinar():
    return synthetic_webinar(400, seed=5, webinar_id=WEBINAR_ID, uuid=UUID)


@pytest.fixture
def sim(webinar):
    simulator = ZoomSimulator(webinar).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def run(tmp_path, monkeypatch):
    """Invoke the CLI in an empty directory (no stray .env) with exactly `env`."""
    monkeypatch.chdir(tmp_path)

    def invoke(args, env):
        base = {name: None for name in ZOOM_VARIABLES}
        base.update({"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "ZOOM_REQUESTS_PER_SECOND": "0"})
        return CliRunner().invoke(cli, args, env={**base, **env}, catch_exceptions=False)

    return invoke


def test_sync_prints_pages_rows_and_registrants_with_progress_on_stderr(run, sim, webinar, tmp_path):
    result = run(["sync", WEBINAR_ID], sim.environ())
    assert result.exit_code == 0, result.output
    rows = len(webinar.participants[UUID])
    registrants = webinar.registrants[WEBINAR_ID]
    statuses = {s: sum(r["status"] == s for r in registrants) for s in ("approved", "denied", "pending")}
    assert result.stdout.splitlines() == [
        f"webinar {WEBINAR_ID}: 1 instance(s) fetched",
        f"  {UUID}: 2 pages, {rows} rows ({rows} new)",
        f"  registrants: {len(registrants)} (approved {statuses['approved']}, denied {statuses['denied']}, "
        f"pending {statuses['pending']}; {len(registrants)} new), {sim.calls['registrants']} pages",
        f"  API calls: {sim.api_calls}, token requests: 1",
    ]
    assert f"{UUID}: page 1/2, 300 rows" in result.stderr and f"{UUID}: page 2/2, {rows - 300} rows" in result.stderr
    db = open_db(str(tmp_path / "cli.db"))
    assert db.execute("SELECT count(*) FROM report_rows").fetchone()[0] == rows
    db.close()


def test_sync_of_one_instance(run, sim):
    result = run(["sync", WEBINAR_ID, "--instance", UUID, "--kind", "webinar", "--no-registrants", "-q"], sim.environ())
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert sim.calls == {"token": 1, "participants": 2, "poll_definitions": 1, "polls": 1}  # polls: issue 16


def test_sync_without_credentials_names_every_missing_variable(run):
    result = run(["sync", WEBINAR_ID], {"ZOOM_CLIENT_ID": "set"})
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == "Error: Zoom API credentials missing: set ZOOM_ACCOUNT_ID, ZOOM_CLIENT_SECRET (see config.example.env)"
    )


def test_sync_with_bad_credentials_exits_with_one_line(run, sim):
    result = run(["sync", WEBINAR_ID], sim.environ() | {"ZOOM_CLIENT_SECRET": "wrong"})
    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: bad credentials: Zoom rejected the Server-to-Server OAuth credentials")
    assert sim.calls == {"token": 1}


def test_sync_of_an_unknown_meeting_exits_with_one_line(run, sim):
    result = run(["sync", "999"], sim.environ())
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown meeting or instance: no meeting or webinar 999")
    assert len(result.stderr.strip().splitlines()) == 1


def test_sync_of_a_report_too_old_exits_non_zero(run, sim):
    sim.dataset.too_old.add(UUID)
    result = run(["sync", WEBINAR_ID, "--instance", UUID, "--kind", "webinar", "-q"], sim.environ())
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: report too old: Zoom API 400 (code 12702)")


def test_sync_of_a_meeting_with_one_instance_too_old_says_which(run):
    dataset = meeting_dataset("newer==", 5)
    dataset.add_instance("81234567890", "older==", "2025-01-01T09:00:00Z", [])
    dataset.too_old.add("older==")
    with ZoomSimulator(dataset) as sim:
        result = run(["sync", "81234567890", "-q"], sim.environ())
    assert result.exit_code == 1
    assert "  newer==: 1 pages, 5 rows (5 new)" in result.stdout
    assert result.stderr.startswith(
        "Error: 1 instance report(s) not available: older==: report too old (Zoom API 400 (code 12702)"
    )


def test_get_prints_the_raw_json_zoom_answered(run, sim, webinar):
    result = run(["get", f"/past_webinars/{WEBINAR_ID}/instances"], sim.environ())
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"webinars": webinar.instances[WEBINAR_ID]}


def test_get_paginate_prints_one_page_per_line(run, sim, webinar):
    result = run(["get", f"/webinars/{WEBINAR_ID}/registrants", "-p", "status=approved", "--paginate"], sim.environ())
    assert result.exit_code == 0, result.output
    pages = [json.loads(line) for line in result.stdout.splitlines()]
    ids = [r["id"] for page in pages for r in page["registrants"]]
    assert ids == [r["id"] for r in webinar.registrants[WEBINAR_ID] if r["status"] == "approved"]
    assert len(pages) == sim.calls["registrants"] >= 2


def test_track_then_poll_status(run, sim, tmp_path):
    result = run(["track", "81234567890", "--kind", "meeting"], {})
    assert result.exit_code == 0
    assert result.stdout.startswith("tracking meeting 81234567890")
    db = open_db(str(tmp_path / "cli.db"))
    assert db.execute("SELECT meeting_id, kind, source FROM tracked_meetings").fetchall() == [
        ("81234567890", "meeting", "cli")
    ]
    db.close()
    assert run(["track", "not-a-number"], {}).exit_code == 1
    status = run(["poll-status", "--json"], {})
    assert json.loads(status.stdout) == {"daily_limit_until": None, "schedule": []}


def test_report_commands_are_registered():
    assert {"track", "sync", "get", "poll-status"} <= set(cli.list_commands(None))
