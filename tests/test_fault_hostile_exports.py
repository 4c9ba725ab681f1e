"""Hostile display names end to end (issue 7): names from webhooks and from Zoom's reports
(formulas, quotes, newlines, control characters, right-to-left marks, lone surrogates) flow
through normalization, the report sync and the attendance engine, and every export the CLI
writes (attendance CSV/JSON, export-raw CSV/JSONL) stays valid and spreadsheet-safe."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from integrations.derived.refresh import refresh_instances
from integrations.ingest.normalize import normalize_pending
from integrations.reads.formats import FORMULA_STARTS
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import Dataset, ZoomSimulator
from tests.conftest import API_TOKEN, post_event
from tests.fault_support import ROOT, process_env, verify_chain
from tests.test_fault_hostile_input import NASTY_STRINGS
from tests.zoom_support import FakeClock, simulator_client

WEBINAR_ID = "97890123456"
UUID = "hOsTiLe+nAmEs/1=="
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=1)
FMT = "%Y-%m-%dT%H:%M:%SZ"
NAMES = [n for n in NASTY_STRINGS if n.strip()] + ["Ordinary Name"]


def instance_event(name: str, at: datetime) -> dict:
    obj = {"id": WEBINAR_ID, "uuid": UUID, "host_id": "h", "topic": "=cmd|' /C calc'!A0", "type": 5}
    obj |= {"start_time": START.strftime(FMT), "end_time": END.strftime(FMT), "duration": 60}
    return {"event": name, "event_ts": int(at.timestamp() * 1000), "payload": {"account_id": "a", "object": obj}}


def participant_event(name: str, i: int, display: str, at: datetime) -> dict:
    event = instance_event(name, at)
    person = {
        "user_id": str(1000 + i),
        "user_name": display,
        "participant_uuid": f"pu-{i}",
        "registrant_id": f"reg-{i}",
        "email": f"p{i}@example.org" if i % 2 else "",
    }
    person["join_time" if name.endswith("joined") else "leave_time"] = at.strftime(FMT)
    event["payload"]["object"]["participant"] = person
    return event


def report_dataset() -> Dataset:
    dataset = Dataset()
    dataset.add_meeting(WEBINAR_ID, "webinar", topic="@SUM(1+1)")
    rows = []
    for i, display in enumerate(NAMES):
        join = START + timedelta(minutes=i)
        rows.append(
            {
                "id": "",
                "user_id": str(5000 + i),
                "name": "+" + display,  # different from the webhook names: both sources show
                "user_email": f"r{i}@example.org",
                "registrant_id": f"reg-r{i}",
                "participant_user_id": "",
                "join_time": join.strftime(FMT),
                "leave_time": (join + timedelta(minutes=20)).strftime(FMT),
                "duration": 1200,
                "failover": False,
                "status": "in_meeting",
                "customer_key": "-1+1",
                "bo_mtg_id": "",
            }
        )
    dataset.add_instance(WEBINAR_ID, UUID, START.strftime(FMT), rows)
    return dataset


def cli(database, *args: str) -> str:
    """Run `python worker.py ARGS` as a user would; its stdout as text (it must be valid UTF-8)."""
    result = subprocess.run(
        [sys.executable, "worker.py", *args],
        cwd=ROOT,
        env=process_env(database),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode("utf-8")  # strict: an export must be readable as UTF-8


def assert_safe_csv(text: str, *, rows: int | None = None) -> list[dict[str, str]]:
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    if rows is not None:
        assert len(records) == rows, f"{len(records)} CSV rows, expected {rows}: a hostile value split or merged rows"
    for record in records:
        assert None not in record, f"a row has more cells than the header: {record}"
        for field, cell in record.items():
            assert not (cell or "").startswith(FORMULA_STARTS), f"{field}: a spreadsheet would run {cell!r}"
    return records


@pytest.mark.slow
def test_every_export_stays_valid_with_hostile_display_names(tmp_path, client, db, config):
    database = tmp_path / "attendance.db"
    assert str(database) == config.database_path
    post_event(client, instance_event("webinar.started", START))
    for i, display in enumerate(NAMES):
        joined = START + timedelta(minutes=i)
        assert (
            post_event(client, participant_event("webinar.participant_joined", i, display, joined)).status_code == 200
        )
        assert (
            post_event(
                client, participant_event("webinar.participant_left", i, display, joined + timedelta(minutes=30))
            ).status_code
            == 200
        )
    post_event(client, instance_event("webinar.ended", END))
    affected = normalize_pending(db)
    assert db.execute("SELECT count(*) FROM raw_records WHERE parse_error LIKE 'unexpected%'").fetchone()[0] == 0

    with ZoomSimulator(report_dataset()) as sim:
        zoom = simulator_client(sim, FakeClock())
        [fetch] = sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False).fetches
        zoom.close()
    assert fetch.status == "complete" and fetch.rows == len(NAMES)
    refresh_instances(db, [*affected, UUID], force=True)

    attendance_csv = assert_safe_csv(cli(database, "attendance", WEBINAR_ID, "--format", "csv"))
    attendance_json = json.loads(cli(database, "attendance", WEBINAR_ID, "--format", "json"))
    assert len(attendance_csv) == len(attendance_json["attendees"]) >= len(NAMES)
    shown = " ".join(json.dumps(a, ensure_ascii=False) for a in attendance_json["attendees"])
    assert "Ordinary Name" in shown and "\u202eevil" in shown  # names kept, not dropped

    raw_csv = assert_safe_csv(cli(database, "export-raw", "--format", "csv"))
    raw_lines = cli(database, "export-raw", "--format", "jsonl").splitlines()
    parsed = [json.loads(line) for line in raw_lines]
    records = db.execute("SELECT count(*) FROM raw_records").fetchone()[0]
    assert {line["record_id"] for line in parsed} == set(range(1, records + 1))  # every record exported
    assert len(raw_csv) == len(parsed), "a hostile value split or merged CSV rows"
    # The read API serves the same exports.
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    for path, rows in (
        (f"/api/meetings/{WEBINAR_ID}/attendance?format=csv", len(attendance_csv)),
        ("/api/meetings?format=csv", None),
        ("/api/raw-events?format=csv", len(parsed)),
    ):
        response = client.get(path, headers=auth)
        assert response.status_code == 200, (path, response.data[:300])
        assert_safe_csv(response.get_data().decode("utf-8"), rows=rows)
    for path in (f"/api/meetings/{WEBINAR_ID}/attendance", "/api/meetings"):
        response = client.get(path, headers=auth)
        assert response.status_code == 200 and json.loads(response.get_data().decode("utf-8"))
    lines = client.get("/api/raw-events?format=jsonl", headers=auth).get_data().decode("utf-8").splitlines()
    assert [json.loads(line)["record_id"] for line in lines] == [line["record_id"] for line in parsed]
    verify_chain(database)
    print(f"\n{len(NAMES)} hostile names: {len(attendance_csv)} attendance rows, {records} raw records exported")
