"""Every command gives the same output on SQLite and on PostgreSQL (issue 19).

One scenario (tests/stores_support.py) is played into each store; each test compares one
command's output between the stores byte for byte (after the normalizations Player.normalize
lists) and checks that the output says something, so the comparison can fail."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import time_machine
from click.testing import CliRunner

import worker
from integrations.audit import export_parallel
from integrations.certificates.signing import generate_key, private_key_pem
from integrations.simulator.zoom_api import ZoomSimulator
from store import audit
from tests.stores_support import FROZEN_AT, Output, cli_env, funnel_scenario, play


@pytest.fixture(scope="module")
def scenario_runs(tmp_path_factory, pg_server):
    """The scenario played into a SQLite file and a PostgreSQL database: (root, urls, outputs)."""
    root = tmp_path_factory.mktemp("stores")
    # One signing key for both runs: Ed25519 signatures are deterministic, so the codes match.
    key_file = root / "signing-key.pem"
    key_file.write_bytes(private_key_pem(generate_key()))
    key_file.chmod(0o600)
    urls = {"sqlite": f"sqlite:///{root / 'sqlite' / 'attendance.db'}", "postgresql": pg_server.create_database()}
    try:
        funnel = funnel_scenario()
        outputs = {}
        with ZoomSimulator(funnel.dataset) as sim:
            for store, url in urls.items():
                outputs[store] = play(url, root / store, key_file, sim, funnel)
        yield root, urls, outputs
    finally:
        pg_server.drop_database(urls["postgresql"])


@pytest.fixture(scope="module")
def outputs(scenario_runs) -> dict[str, dict[str, Output]]:
    return scenario_runs[2]


def same(outputs, name: str, *, code: int = 0) -> Output:
    """The output `name` of both stores: equal, with exit code `code`, and not empty."""
    sqlite, postgres = outputs["sqlite"][name], outputs["postgresql"][name]
    assert sqlite.code == code, sqlite
    assert sqlite.out.strip() or sqlite.err.strip(), f"{name}: no output to compare"
    assert postgres == sqlite, f"{name} differs"
    return sqlite


# The scenario's own writes print what they did: the same on both stores.
@pytest.mark.parametrize(
    "name",
    [
        "import-registrations",
        "rules webinar",
        "rules meeting",
        "certificates issue webinar",
        "certificates issue meeting",
        "certificates revoke",
        "certificates reissue",
    ],
)
def test_writes_report_the_same(outputs, name):
    same(outputs, name)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
@pytest.mark.parametrize("command", ["attendance", "summary", "timeline"])
@pytest.mark.parametrize("meeting", ["81234567890", "93000000001"])
def test_attendance_summary_timeline(outputs, command, meeting, fmt):
    same(outputs, f"{command} {meeting} {fmt}")


def test_attendance_counts_people_from_webhooks_and_the_report(outputs):
    meeting = json.loads(same(outputs, "attendance 81234567890 json").out)
    assert len(meeting["attendees"]) == 4  # the four people of the webhook-only meeting
    webinar = json.loads(same(outputs, "attendance 93000000001 json").out)
    assert len(webinar["attendees"]) > 100  # the report's people and the late webhook guest
    same(outputs, "attendance absent")
    same(outputs, "attendance override")


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_meetings(outputs, fmt):
    same(outputs, f"meetings {fmt}")


@pytest.mark.parametrize(
    "name", ["funnel json", "funnel csv", "funnel table", "funnel passed json", "funnel passed csv"]
)
def test_funnel(outputs, name):
    same(outputs, name)


def test_funnel_stages_dropped_and_overrides(outputs):
    stages = {s["stage"]: s["count"] for s in json.loads(same(outputs, "funnel json").out)["stages"]}
    assert stages["registered"] > stages["joined"] > stages["attended"] > stages["passed"] > 0
    assert json.loads(same(outputs, "funnel dropped").out)["people"]
    same(outputs, "funnel override")
    same(outputs, "funnel passed table")


@pytest.mark.parametrize("name", ["certificates list json", "certificates list csv", "certificates list table"])
def test_certificates_list(outputs, name):
    same(outputs, name)


def test_certificates_issued_revoked_reissued_and_verified(outputs):
    rows = json.loads(same(outputs, "certificates list json").out)
    assert len(rows) == 6 and sum(1 for r in rows if r["revoked"]) == 2  # revoked 2; 3 reissued
    assert len(json.loads(same(outputs, "certificates list meeting").out)) == 3
    checked = same(outputs, "certificates verify")
    assert json.loads(checked.out)["valid"] and "revocation not checked" not in checked.err


def test_verify(outputs):
    text = same(outputs, "verify").out
    assert text.startswith("OK 23 records, head ") and "OK certificate events 11" in text
    assert json.loads(same(outputs, "verify json").out)["ok"]


@pytest.mark.parametrize("name", ["jsonl", "csv", "meeting", "since", "until"])
def test_export_raw(outputs, name):
    same(outputs, f"export-raw {name}")
    exported = same(outputs, f"export-raw {name} file").out
    assert exported.count("\n") >= (10 if name == "meeting" else 250)


def test_export_raw_of_an_unknown_meeting_fails_alike(outputs):
    assert "no stored meeting or instance 'nope'" in same(outputs, "export-raw unknown", code=1).err
    answer = same(outputs, "GET /api/raw-events?meeting=nope", code=404)
    assert json.loads(answer.out)["parameter"] == "meeting"


def test_evidence_bundle_is_the_same_file_for_file(outputs):
    assert "chain head " in same(outputs, "evidence").out
    files = same(outputs, "evidence files").out
    assert "MANIFEST" in files and files.count("\n") >= 5


def test_rebuild_and_what_it_rebuilds(outputs):
    assert json.loads(same(outputs, "rebuild").out)["rows_written"] > 0
    same(outputs, "attendance after rebuild")
    same(outputs, "funnel after rebuild")
    assert outputs["sqlite"]["attendance after rebuild"] == outputs["sqlite"]["attendance 93000000001 json"]


def test_problems(outputs):
    same(outputs, "problems")


def test_backup_reports_the_same_head(outputs):
    sqlite, postgres = outputs["sqlite"]["backup"], outputs["postgresql"]["backup"]
    assert sqlite.code == postgres.code == 0
    assert sqlite.out.startswith("backed up 23 records (head ") and postgres.out == sqlite.out
    # The hint on stderr differs on purpose: a pg_dump file is checked after pg_restore
    # (test_postgresql_backup_restores_to_a_database_that_verifies), a SQLite copy directly.
    assert "verify --database WORKDIR/backup.db --head" in sqlite.err


API = [
    "/api/meetings",
    "/api/meetings/81234567890/attendance",
    "/api/meetings/81234567890/summary",
    "/api/meetings/81234567890/timeline",
    "/api/meetings/81234567890/attendance?format=csv&include_absent=1",
    "/api/meetings/93000000001/attendance",
    "/api/meetings/93000000001/summary",
    "/api/meetings/93000000001/timeline",
    "/api/meetings/93000000001/attendance?format=csv&include_absent=1",
    "/api/meetings/93000000001/funnel",
    "/api/meetings/93000000001/funnel?stage=passed&format=csv",
    "/api/meetings/93000000001/funnel?dropped_at=attended",
    "/api/raw-events",
    "/api/raw-events?meeting=81234567890&format=csv",
]


@pytest.mark.parametrize("path", API)
def test_read_api(outputs, path):
    same(outputs, f"GET {path}", code=200)


W, C = "FunnelScenario%2BInstance%3D%3D", "certUUID1234567890abcd%3D%3D"
DASHBOARD = [
    "/",
    f"/instance?uuid={W}",
    f"/instance/data.json?uuid={W}",
    f"/instance/funnel.json?uuid={W}",
    f"/attendance?uuid={W}&sort=name&dir=asc&page=2",
    f"/attendance.csv?uuid={W}",
    f"/attendance.jsonl?uuid={C}&min_minutes=30",
    f"/funnel?uuid={W}",
    f"/funnel?uuid={W}&stage=passed",
    f"/instance?uuid={C}",
    "/raw/1.json",
    "/person",
]


@pytest.mark.parametrize("page", DASHBOARD)
def test_dashboard(outputs, page):
    same(outputs, f"dashboard {page}", code=200)


def test_every_output_is_compared(outputs):
    """No output of the scenario escapes a test above (a new one must get its test)."""
    names = set(outputs["sqlite"])
    assert names == set(outputs["postgresql"])
    covered = {f"GET {p}" for p in [*API, "/api/raw-events?meeting=nope"]} | {f"dashboard {p}" for p in DASHBOARD}
    uncovered = {n for n in names - covered if not n.startswith(("dashboard", "GET"))}
    assert uncovered <= set(_COMMAND_OUTPUTS), sorted(uncovered - set(_COMMAND_OUTPUTS))
    assert {n for n in names if n.startswith(("dashboard", "GET"))} == covered


_COMMAND_OUTPUTS = [
    *(f"{c} {m} {f}" for c in ("attendance", "summary", "timeline") for m in ("81234567890", "93000000001")
      for f in ("json", "csv", "table")),
    *(f"meetings {f}" for f in ("json", "csv", "table")),
    *(f"funnel {f}" for f in ("json", "csv", "table")),
    *(f"funnel passed {f}" for f in ("json", "csv", "table")),
    *(f"certificates list {f}" for f in ("json", "csv", "table")),
    *(f"export-raw {n}" for n in ("jsonl", "csv", "meeting", "since", "until")),
    *(f"export-raw {n} file" for n in ("jsonl", "csv", "meeting", "since", "until")),
    "import-registrations", "rules webinar", "rules meeting", "certificates issue webinar",
    "certificates issue meeting", "certificates revoke", "certificates reissue", "attendance absent",
    "attendance override", "funnel dropped", "funnel override", "certificates list meeting",
    "certificates verify", "verify", "verify json", "evidence", "evidence files", "problems", "rebuild",
    "attendance after rebuild", "funnel after rebuild", "backup", "export-raw unknown",
]  # fmt: skip


def test_postgresql_backup_restores_to_a_database_that_verifies(scenario_runs, pg_server):
    """`backup` on PostgreSQL is a pg_dump file (0600); pg_restore of it verifies with the same head."""
    root, _, outputs = scenario_runs
    backup = root / "postgresql" / "backup.db"
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600
    assert backup.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    head = outputs["postgresql"]["backup"].out.split("(head ")[1].split(")")[0]
    restored = pg_server.create_database()
    try:
        pg_restore = shutil.which("pg_restore")
        assert pg_restore, "pg_restore not found: apt-get install postgresql-client"
        done = subprocess.run(
            [pg_restore, "--no-owner", f"--dbname={restored}", str(backup)], capture_output=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        hint = outputs["postgresql"]["backup"].err
        assert "pg_restore --no-owner --dbname=EMPTY_DATABASE_URL WORKDIR/backup.db && " in hint
        assert f"verify --database EMPTY_DATABASE_URL --head {head}" in hint
        env = cli_env(restored, root / "signing-key.pem")
        checked = ["verify", "--database", restored, "--head", head]
        result = CliRunner().invoke(worker.cli, checked, env={**env, "DATABASE_URL": "sqlite:///nowhere/x.db"})
        assert result.exit_code == 0, result.output
        expected = outputs["sqlite"]["verify"].out.splitlines()
        assert result.stdout.splitlines() == [expected[0], f"expected head {head} is in the chain", expected[1]]
        with time_machine.travel(FROZEN_AT, tick=False):  # "as of" is now
            again = CliRunner().invoke(worker.cli, ["attendance", "93000000001", "--format", "json"], env=env)
        assert again.stdout == outputs["sqlite"]["attendance 93000000001 json"].out
    finally:
        pg_server.drop_database(restored)


def test_postgresql_backup_never_writes_through_a_symlink(scenario_runs, pg_server, tmp_path):
    _, urls, _ = scenario_runs
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "backup.dump"
    link.symlink_to(victim)
    env = cli_env(urls["postgresql"], Path("unused"))
    refused = CliRunner().invoke(worker.cli, ["backup", str(link)], env=env)
    assert refused.exit_code == 1 and "already exists (a symlink)" in refused.output
    forced = CliRunner().invoke(worker.cli, ["backup", str(link), "--force"], env=env)
    assert forced.exit_code == 0, forced.output
    assert victim.read_text() == "keep me" and not link.is_symlink()
    assert stat.S_IMODE(os.stat(link).st_mode) == 0o600


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_parallel_export_and_verify_match_the_serial_ones(scenario_runs, store, monkeypatch, tmp_path):
    """Slices formatted and ranges verified by worker processes (each its own connection) on each store."""
    root, urls, outputs = scenario_runs
    location = urls[store].removeprefix("sqlite:///")
    monkeypatch.setattr(export_parallel, "SLICE_RECORDS", 4)  # many slices from a small log
    monkeypatch.setattr(audit, "VERIFY_SPAN", 5)
    for fmt, name in (("jsonl", "export-raw jsonl file"), ("csv", "export-raw csv file")):
        target = tmp_path / f"{store}.{fmt}"
        with open(target, "wb") as f:
            export_parallel.export_to_fd(location, fmt, f.fileno(), workers=3)
        assert target.read_text() == outputs["sqlite"][name].out
    head = audit.verify_file(location, workers=3)
    assert head.count == 23 and f"head {head.chain_hash}" in outputs["sqlite"]["verify"].out
