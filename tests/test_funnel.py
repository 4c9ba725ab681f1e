"""The record funnel end to end (issue 16): sync from the simulator over HTTP, import, rules,
`funnel` against a generated ground truth, the read API, rebuild identity, chain and upgrade."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest

from integrations.funnel import people_at_stage
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator
from store.audit import verify_chain
from store.db import open_db
from store.migrations import migrate, migrations
from tests.conftest import API_TOKEN
from tests.funnel_support import PASS_PERCENT, WEBINAR, scenario
from tests.zoom_support import FakeClock, simulator_client

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def synced(db, tmp_path):
    """The scenario synced into the test database; its CSV written beside it."""
    sc = scenario(400)
    with ZoomSimulator(sc.dataset) as sim:
        result = sync_meeting(db, simulator_client(sim, FakeClock()), WEBINAR)
    assert result.polls is not None and result.polls.quizzes == 1 and not result.polls.failures
    path = tmp_path / "registrations.csv"
    path.write_bytes(sc.csv)
    return sc, str(path)


def run_json(runner_env, args):
    result = runner_env([*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_funnel_counts_match_the_generated_ground_truth(runner_env, synced):
    sc, path = synced
    imported = run_json(runner_env, ["import-registrations", WEBINAR, path])
    assert [r["reason"] for r in imported["rejected"]] == ["invalid email", "missing email"]
    run_json(runner_env, ["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", str(PASS_PERCENT)])
    result = run_json(runner_env, ["funnel", WEBINAR])
    assert result["meeting"] == WEBINAR and result["rules"]["min_minutes"] == 60
    assert result["stages"] == [{"stage": s, "count": sc.truth[s]} for s in sc.truth]
    # Every count opens into the people behind it.
    for stage, who in sc.people.items():
        listed = runner_env(["funnel", WEBINAR, "--stage", stage, "--format", "csv"])
        rows = list(csv.DictReader(io.StringIO(listed.output)))
        assert len(rows) == sc.truth[stage]
        emails = {r["email"] for r in rows if r["email"]}
        assert emails == {w for w in who if "@" in w}
    dropped = run_json(runner_env, ["funnel", WEBINAR, "--dropped-at", "attended"])["people"]
    assert {p["email"] for p in dropped} == sc.people["joined"] - sc.people["attended"]


def test_import_is_idempotent_and_its_file_is_in_the_verified_chain(runner_env, synced, db):
    _, path = synced
    first = run_json(runner_env, ["import-registrations", WEBINAR, path])
    again = run_json(runner_env, ["import-registrations", WEBINAR, path])
    assert first["new"] > 0 and again["already_imported"] and again["new"] == 0
    assert again["record_id"] == first["record_id"]
    source, body = db.execute("SELECT source, body FROM raw_records WHERE id = ?", [first["record_id"]]).fetchone()
    assert source == "import" and bytes(body) == Path(path).read_bytes()
    assert db.execute("SELECT count(*) FROM registration_imports").fetchone()[0] == 1
    assert verify_chain(db).record_id == first["record_id"]
    assert runner_env(["verify"]).exit_code == 0


def test_import_without_email_column_is_one_line_error(runner_env, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("name,school\nAna,X\n")
    result = runner_env(["import-registrations", WEBINAR, str(path)])
    assert result.exit_code == 1 and "no `email` column" in result.output and "Traceback" not in result.output


def test_rules_are_versioned_and_used_by_attendance_unless_overridden(runner_env, synced):
    run_json(runner_env, ["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", "70"])
    same = run_json(runner_env, ["rules", WEBINAR, "--min-minutes", "60"])
    assert not same["changed"] and len(same["history"]) == 1
    changed = run_json(runner_env, ["rules", WEBINAR, "--min-percent", "50"])
    assert changed["changed"] and [h["min_minutes"] for h in changed["history"]] == [60, None]
    assert changed["rules"] == {**changed["history"][-1], "pass_percent": 70.0} | {"min_percent": 50.0}
    shown = run_json(runner_env, ["rules", WEBINAR])
    assert shown["history"] == changed["history"]
    stored = run_json(runner_env, ["attendance", WEBINAR])
    assert stored["meeting"]["threshold"] == {"min_percent": 50.0}
    override = run_json(runner_env, ["attendance", WEBINAR, "--min-minutes", "5"])
    assert override["meeting"]["threshold"] == {"min_minutes": 5.0}
    funnel = run_json(runner_env, ["funnel", WEBINAR, "--min-minutes", "0"])
    assert funnel["rules"]["overridden"] == ["min_minutes"] and funnel["rules"]["min_percent"] is None


def test_funnel_table_without_rules_says_so_in_words_and_json_keeps_null(runner_env, synced):
    table = runner_env(["funnel", WEBINAR, "--format", "table"])
    assert table.exit_code == 0, table.output
    head = table.output.splitlines()[0]
    assert "None" not in table.output
    assert head.endswith("rules: no minimum (everyone who joined attended), no pass rule (none stored)")
    listed = runner_env(["funnel", WEBINAR, "--stage", "joined", "--format", "table"])
    assert listed.exit_code == 0 and "None" not in listed.output
    assert run_json(runner_env, ["funnel", WEBINAR])["rules"] == {
        "min_minutes": None,
        "min_percent": None,
        "pass_percent": None,
        "version": None,
        "set_at": None,
        "overridden": [],
    }
    run_json(runner_env, ["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", "70"])
    stored = runner_env(["funnel", WEBINAR, "--min-percent", "50", "--format", "table"])
    assert stored.output.splitlines()[0].endswith(
        "rules: min_percent=50, pass_percent=70 (version 1, overridden: min_percent)"
    )


def test_people_at_stage_gives_what_certificates_need(db, synced):
    sc, _ = synced
    with pytest.raises(Exception, match="no stage 'passed'"):
        people_at_stage(db, WEBINAR, "passed")  # no pass percent stored yet
    from store.rules import set_rules

    set_rules(db, WEBINAR, {"min_minutes": 60, "pass_percent": PASS_PERCENT})
    rules, people = people_at_stage(db, WEBINAR, "passed")
    assert rules["pass_percent"] == PASS_PERCENT and len(people) == sc.truth["passed"]
    assert all(p["attended_minutes"] >= 60 and p["score_percent"] >= PASS_PERCENT and p["email"] for p in people)


def test_read_api_funnel(client, db, synced):
    sc, _ = synced
    answer = client.get(f"/api/meetings/{WEBINAR}/funnel", headers=AUTH)
    assert answer.status_code == 200
    stages = {s["stage"]: s["count"] for s in json.loads(answer.get_data())["stages"]}
    assert stages["joined"] == sc.truth["joined"] and "passed" not in stages
    listed = client.get(f"/api/meetings/{WEBINAR}/funnel?stage=joined&format=csv", headers=AUTH)
    assert len(listed.get_data(as_text=True).strip().splitlines()) == sc.truth["joined"] + 1
    assert client.get(f"/api/meetings/{WEBINAR}/funnel?stage=nope", headers=AUTH).status_code == 400
    assert client.get(f"/api/meetings/{WEBINAR}/funnel").status_code == 401
    assert client.get("/api/meetings/99999999999/funnel", headers=AUTH).status_code == 404


def derived(db):
    return {
        table: db.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
        for table in ("quiz_scores", "funnel_people", "attendance", "people")
    }


def test_rebuild_gives_identical_quiz_and_funnel_rows(runner_env, synced, db):
    _, path = synced
    run_json(runner_env, ["import-registrations", WEBINAR, path])
    run_json(runner_env, ["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", "70"])
    run_json(runner_env, ["funnel", WEBINAR])
    before = derived(db)
    assert before["quiz_scores"] and before["funnel_people"]
    db.execute("DELETE FROM quiz_scores")
    db.execute("UPDATE funnel_people SET passed = 1 - passed")
    assert runner_env(["rebuild", "--format", "json"]).exit_code == 0
    assert derived(db) == before


def test_an_existing_database_upgrades_in_place_and_still_verifies(tmp_path):
    path = str(tmp_path / "old.db")
    old = open_db(path)
    migrations.apply(old, stop_before="m012_raw_records_import_source")
    from store.evidence import store_delivery

    store_delivery(old, b'{"event":"meeting.started"}', timestamp="1", signature="v0=x")
    with pytest.raises(sqlite3.IntegrityError):
        old.execute(
            "INSERT INTO raw_records (source, received_at, body, sha256, chain_hash) VALUES ('import', '', x'', '', '')"
        )
    old.close()
    db = open_db(path)
    migrate(db)
    from store.registrations import save_import

    result = save_import(db, "1", body=b"email\na@b.co\n", filename="x.csv", rows=[], rejects=[])
    assert verify_chain(db).count == 2 and result.raw_id == 2
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO raw_records (source, received_at, body, sha256, chain_hash) VALUES ('x', '', x'', '', '')"
        )
    db.close()
    assert os.path.exists(path)


def test_raw_export_shows_an_imported_list_as_the_file_it_is(runner_env, synced, tmp_path):
    _, path = synced
    run_json(runner_env, ["import-registrations", WEBINAR, path])
    out = tmp_path / "raw.jsonl"
    result = runner_env(["export-raw", "--meeting", WEBINAR, "--format", "jsonl", "-o", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    [imported] = [line for line in lines if line["source"] == "import"]
    assert imported["event"] == "import.file" and imported["parse_error"] is None
    assert imported["raw"] == Path(path).read_text()
