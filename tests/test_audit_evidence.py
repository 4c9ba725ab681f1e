"""`evidence`: one folder or zip an auditor checks with its MANIFEST and one verify command (issue 5)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pytest

from integrations.zoom.rawlog import JSONL_COLUMNS, RAW_LOG_COLUMNS
from store.rawlog import REGISTRANT_COLUMNS
from tests.attendance_support import Scenario, registrant, report_row
from tests.audit_support import run_worker

WEBINAR = "81234567890"
UUID = "evi/dence+uuid=="
FILES = {
    "attendance.csv",
    "summary.json",
    "raw_join_log.jsonl",
    "raw_join_log.csv",
    "report_pages.jsonl",
    "registrants.csv",
    "README.txt",
    "MANIFEST",
}


@pytest.fixture
def webinar(client, config):
    """A webinar with webhooks, a complete report synced over HTTP, registrants, and another instance."""
    s = Scenario(client, config, meeting_id=WEBINAR, uuid=UUID, kind="webinar")
    s.started("10:00")
    s.joined("u1", "Ada Lovelace", "10:01", email="ada@example.com", registrant_id="r1")
    s.joined("u2", '=HYPERLINK("http://evil")', "10:02")
    s.left("u1", "Ada Lovelace", "11:00", email="ada@example.com", registrant_id="r1")
    s.ended("11:30")
    rows = [
        report_row("u1", "Ada Lovelace", "10:01", "11:00", user_email="ada@example.com", registrant_id="r1"),
        report_row("u3", "Reported Only", "10:30", "11:30"),
    ]
    s.report(
        rows,
        registrants=[
            registrant("r1", "ada@example.com", "Ada", "Lovelace"),
            registrant("r9", "no@example.com", "Never", "Came"),
        ],
    )
    other = Scenario(client, config, meeting_id=WEBINAR, uuid="other-instance==", kind="webinar", day="2024-04-01")
    other.joined("u7", "Last Month", "10:00")
    return config.database_path


def bundle(database: str, output: Path, *args: str) -> str:
    result = run_worker("evidence", UUID, "--output", str(output), "--database", database, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def read_manifest(text: str) -> tuple[dict[str, str], str]:
    """File hashes, and the verify command, from a MANIFEST."""
    hashes = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", text, re.M)}
    (command,) = re.findall(r"^# Check the log is intact:\s+(python worker\.py verify .*)$", text, re.M)
    return hashes, command


def test_directory_bundle_checks_out_with_its_manifest_and_verify_command(webinar, tmp_path):
    out = tmp_path / "bundle"
    printed = bundle(webinar, out, "--min-minutes", "30")
    assert {p.name for p in out.iterdir()} == FILES
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in out.iterdir())
    manifest = (out / "MANIFEST").read_text()
    hashes, command = read_manifest(manifest)
    assert set(hashes) == FILES - {"MANIFEST"}
    for name, digest in hashes.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    assert subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST"], cwd=out, capture_output=True).returncode == 0
    assert hashlib.sha256(manifest.encode()).hexdigest() in printed

    conn = sqlite3.connect(webinar)
    head_id, head_hash = conn.execute("SELECT id, chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    assert command == f"python worker.py verify --head {head_hash}"
    assert f"record {head_id}," in manifest
    argv = command.split()[2:]
    assert run_worker(*argv, "--database", webinar).returncode == 0

    # Someone edits a stored delivery afterwards: the auditor's command now fails.
    conn = sqlite3.connect(webinar)
    conn.execute("UPDATE raw_records SET body = CAST(replace(CAST(body AS TEXT), 'Ada', 'Eve') AS BLOB) WHERE id = 2")
    conn.commit()
    conn.close()
    failed = run_worker(*argv, "--database", webinar)
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("Error: FAILED: record 2 ")


def test_bundle_files_open_as_promised(webinar, tmp_path):
    out = tmp_path / "bundle"
    bundle(webinar, out, "--min-minutes", "30")
    _check_attendance_files(out)
    reported = _check_raw_join_log(out)
    _check_report_pages_and_registrants(out, reported)


def _check_attendance_files(out):
    people = list(csv.DictReader(io.StringIO((out / "attendance.csv").read_text(encoding="utf-8"), newline="")))
    assert {p["name"] for p in people} >= {"Ada Lovelace", "Reported Only", '\'=HYPERLINK("http://evil")', "Never Came"}
    ada = next(p for p in people if p["name"] == "Ada Lovelace")
    assert (ada["attended_seconds"], ada["eligible"], ada["registrant_id"]) == ("3540", "true", "r1")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["meeting"]["instance_uuid"] == UUID
    assert summary["unique_attendees"] == len([p for p in people if p["segments"] != "0"])


def _check_raw_join_log(out):
    """The raw join log in both formats; returns its report lines."""
    lines = [json.loads(line) for line in (out / "raw_join_log.jsonl").read_text().splitlines()]
    assert all(tuple(line) == JSONL_COLUMNS for line in lines)
    assert {line["meeting_uuid"] for line in lines} == {UUID}  # not the other instance
    webhooks = [line for line in lines if line["source"] == "webhook"]
    assert [line["event"] for line in webhooks] == [
        "webinar.started",
        "webinar.participant_joined",
        "webinar.participant_joined",
        "webinar.participant_left",
        "webinar.ended",
    ]
    assert all(hashlib.sha256(line["raw"].encode()).hexdigest() == line["sha256"] for line in webhooks)
    reported = [line for line in lines if line["event"] == "report.participant"]
    assert [line["user_name"] for line in reported] == ["Ada Lovelace", "Reported Only"]

    rows = list(csv.DictReader(io.StringIO((out / "raw_join_log.csv").read_text(encoding="utf-8"), newline="")))
    assert tuple(rows[0]) == RAW_LOG_COLUMNS and len(rows) == len(lines)
    return reported


def _check_report_pages_and_registrants(out, reported):
    pages = [json.loads(line) for line in (out / "report_pages.jsonl").read_text().splitlines()]
    assert {line["record_id"] for line in reported} <= {p["record_id"] for p in pages}
    assert any("/registrants" in p["url"] for p in pages)
    for page in pages:
        assert hashlib.sha256(page["raw"].encode()).hexdigest() == page["sha256"]
    for line in reported:
        page = next(p for p in pages if p["record_id"] == line["record_id"])
        assert line["raw"] in page["raw"]

    registrants = list(csv.DictReader(io.StringIO((out / "registrants.csv").read_text(encoding="utf-8"), newline="")))
    assert tuple(registrants[0]) == REGISTRANT_COLUMNS
    assert {r["registrant_id"] for r in registrants} == {"r1", "r9"}


def test_readme_explains_every_file_and_column(webinar, tmp_path):
    out = tmp_path / "bundle"
    bundle(webinar, out, "--min-percent", "50")
    readme = (out / "README.txt").read_text()
    for name in FILES:
        assert re.search(rf"^{re.escape(name)}\s", readme, re.M), name
    for csv_file in ("attendance.csv", "raw_join_log.csv", "registrants.csv"):
        header = next(csv.reader(io.StringIO((out / csv_file).read_text(encoding="utf-8"))))
        for column in header:
            line = re.search(rf"^  {column}: (.*)$", readme, re.M)
            assert line and "see the attendance documentation" not in line.group(1), (csv_file, column)
    assert "raw_encoding" in readme and "sha256sum -c MANIFEST" in readme


def test_zip_bundle_has_the_same_files_and_hashes(webinar, tmp_path):
    target = tmp_path / "evidence.zip"
    bundle(webinar, target)
    assert target.stat().st_mode & 0o777 == 0o600
    with zipfile.ZipFile(target) as z:
        assert set(z.namelist()) == FILES
        hashes, _ = read_manifest(z.read("MANIFEST").decode())
        for name, digest in hashes.items():
            assert hashlib.sha256(z.read(name)).hexdigest() == digest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".evidence-")]


def test_evidence_refuses_to_mix_with_existing_files_or_unknown_meetings(webinar, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "old.txt").write_text("x")
    result = run_worker("evidence", UUID, "--output", str(tmp_path / "used"), "--database", webinar)
    assert result.returncode == 1
    assert "is not an empty directory" in result.stderr.decode()
    result = run_worker("evidence", "nope==", "--output", str(tmp_path / "new"), "--database", webinar)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("Error: no stored meeting or instance 'nope=='")
    assert not (tmp_path / "new").exists()
