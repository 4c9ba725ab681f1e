"""`python worker.py demo` end to end (issue 6): its numbers match what the simulator made."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

from integrations.certificates.names import is_phone_number
from integrations.demo.webinar import WEBINAR_ID, send_plan
from integrations.simulator.webhooks import instance_deliveries
from integrations.simulator.zoom_api import synthetic_webinar
from worker import cli

pytestmark = pytest.mark.slow

ATTENDEES, SEED = 40, 11


def expected_people(rows: list[dict]) -> int:
    """People in the report as issue 4 counts them: a strong id each, guests by display name."""
    rows = [r for r in rows if r["status"] != "in_waiting_room"]
    registered = {r["registrant_id"] for r in rows if r["registrant_id"]}
    guests = {r["name"] for r in rows if not (r["registrant_id"] or r["user_email"] or r["participant_user_id"])}
    return len(registered) + len(guests)


def test_small_demo_end_to_end_matches_the_simulated_webinar(tmp_path, monkeypatch):
    for name in ("ZOOM_WEBHOOK_SECRET_TOKEN", "DATABASE_URL", "ZOOM_API_BASE_URL", "API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "demo.db"
    result = CliRunner().invoke(
        cli, ["demo", "--attendees", str(ATTENDEES), "--speed", "4", "--seed", str(SEED), "--database", str(database)]
    )
    assert result.exit_code == 0, result.output
    # What the simulator generated, recomputed independently of the demo's run.
    dataset = synthetic_webinar(ATTENDEES, seed=SEED, webinar_id=WEBINAR_ID)
    [instance] = dataset.instances[WEBINAR_ID]
    uuid = instance["uuid"]
    rows = dataset.participants[uuid]
    deliveries = instance_deliveries(dataset, WEBINAR_ID, uuid, lost=0.01, seed=SEED)
    delivered = send_plan(deliveries, burst_joins=ATTENDEES)
    lost = len(deliveries) - len(delivered)
    approved = sum(1 for r in dataset.registrants[WEBINAR_ID] if r["status"] == "approved")

    out = result.output
    assert f"webhooks: {len(deliveries):,} generated, {lost} lost on the way, {len(delivered):,} stored" in out
    assert "(0 refused after retries" in out
    assert f"report:   {len(rows):,} rows in 1 pages" in out
    people = int(re.search(r"unique attendees\s+(\d+)", out).group(1))
    assert people == expected_people(rows)
    assert int(re.search(r"registered\s+(\d+)", out).group(1)) == approved
    assert f"Database: {database}" in out

    conn = sqlite3.connect(database)
    stored = [bytes(b) for (b,) in conn.execute("SELECT body FROM raw_records WHERE source = 'webhook' ORDER BY id")]
    assert sorted(stored) == sorted(d.body for _, d in delivered)  # every delivery sent, byte for byte, once
    assert conn.execute("SELECT count(*) FROM report_rows").fetchone()[0] == len(rows)
    assert conn.execute("SELECT count(*) FROM attendance WHERE instance_uuid = ?", [uuid]).fetchone()[0] == people
    # Issue 17: the demo issues certificates to the funnel's `attended` under the stored rules.
    issued = int(re.search(r"Certificates: ([\d,]+) issued", out).group(1).replace(",", ""))
    assert 0 < issued == conn.execute("SELECT count(*) FROM certificates").fetchone()[0] <= people
    attended = [
        n for (n,) in conn.execute("SELECT name FROM funnel_people WHERE instance_uuid = ? AND attended = 1", [uuid])
    ]
    # Dial-in callers, named by their phone number, get none: a phone number is never printed.
    phones = [n for n in attended if is_phone_number(n)]
    assert phones and issued == len(attended) - len(phones)
    assert not any(is_phone_number(n) for (n,) in conn.execute("SELECT name FROM certificates"))
    [rules] = {r for (r,) in conn.execute("SELECT DISTINCT rules FROM certificates")}
    assert json.loads(rules)["min_minutes"] == 60 and json.loads(rules)["overridden"] == []
    # Every attended span comes from the simulated connections: nobody attends longer than
    # the union of their rows allows, so the total is at most the sum of in-meeting rows.
    total = conn.execute("SELECT sum(attended_seconds) FROM attendance WHERE instance_uuid = ?", [uuid]).fetchone()[0]
    assert 0 < total <= sum(r["duration"] for r in rows if r["status"] == "in_meeting")
