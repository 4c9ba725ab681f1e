"""Defects a new-user trial found: bad settings are one `Error:` line from every command, an
unknown meeting is an error on the CLI and over HTTP, outputs never create missing parents,
`verify --json` reports its failure as JSON, bad flags of the read API are a 400."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from integrations.config import ConfigError, load_config
from tests.audit_support import INSTANCE, joined
from tests.conftest import API_TOKEN, post_event
from tests.fault_support import free_port, process_env, start_command
from tests.test_hardening_input import one_line_error, worker
from tests.test_hardening_signals import stop_with, wait_for_line

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.mark.parametrize(
    ("name", "value"),
    [("LOG_LEVEL", "LOUD"), ("PORT", "99999"), ("PORT", "0"), ("REPORT_FETCH_DELAYS", "bogus")],
)
def test_load_config_names_a_bad_log_level_port_or_fetch_delay(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config({name: value}, dotenv=False)


def test_load_config_takes_good_values_in_any_case():
    config = load_config({"LOG_LEVEL": "debug", "PORT": "65535", "REPORT_FETCH_DELAYS": "1m,1h"}, dotenv=False)
    assert (config.log_level, config.port, config.report_delays) == ("DEBUG", 65535, "1m,1h")


@pytest.mark.parametrize(
    ("args", "env", "word"),
    [
        (["serve"], {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        (["meetings"], {"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        (["serve"], {"PORT": "99999"}, "PORT"),
        (["schedule"], {"REPORT_FETCH_DELAYS": "bogus"}, "REPORT_FETCH_DELAYS"),
        (["meetings"], {"REPORT_FETCH_DELAYS": "bogus"}, "REPORT_FETCH_DELAYS"),
        (["doctor"], {"REPORT_FETCH_DELAYS": "bogus"}, "REPORT_FETCH_DELAYS"),
    ],
)
def test_every_command_reports_a_bad_setting_in_one_line(tmp_path, args, env, word):
    one_line_error(worker(*args, database=tmp_path / "a.db", env=env), 1, word)


@pytest.mark.parametrize("command", ["serve", "run"])
@pytest.mark.parametrize("port", ["99999", "0"])
def test_port_option_out_of_range_is_a_usage_error(tmp_path, command, port):
    one_line_error(worker(command, "--port", port, database=tmp_path / "a.db"), 2, "--port")
    assert not (tmp_path / "a.db").exists()


@pytest.fixture
def stored(client, config, runner_env):
    """Two webhooks of one instance, stored and normalized."""
    for n in range(2):
        assert post_event(client, json.dumps(joined(n)).encode()).status_code == 200
    runner_env(["normalize"])
    return config.database_path


def test_export_raw_of_an_unknown_meeting_is_exit_1(stored, tmp_path):
    one_line_error(worker("export-raw", "--meeting", "nope", database=stored), 1, "'nope'")
    known = worker("export-raw", "--meeting", INSTANCE, database=stored)
    assert known.returncode == 0 and len(known.stdout.splitlines()) == 2
    # Known but nothing in the window: an empty export, not an error.
    empty = worker("export-raw", "--meeting", INSTANCE, "--since", "2999-01-01", database=stored)
    assert (empty.returncode, empty.stdout, empty.stderr) == (0, "", "")


def test_a_pending_delivery_makes_its_meeting_known(client, config):
    """Not normalized yet: only its body names the instance, and that is enough."""
    assert post_event(client, json.dumps(joined(1)).encode()).status_code == 200
    result = worker("export-raw", "--meeting", INSTANCE, database=config.database_path)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1


def test_raw_events_of_an_unknown_meeting_is_a_404_naming_the_parameter(client, stored):
    response = client.get("/api/raw-events?meeting=nope", headers=AUTH)
    assert response.status_code == 404
    assert response.json["error"] == "unknown_meeting" and response.json["parameter"] == "meeting"
    empty = client.get(f"/api/raw-events?meeting={INSTANCE.replace('=', '%3D')}&since=2999-01-01", headers=AUTH)
    assert empty.status_code == 200 and empty.get_data() == b""


def test_evidence_and_backup_refuse_a_missing_parent_directory(stored, tmp_path):
    missing = tmp_path / "missing"
    for args in (["evidence", "81234567890", "--output", str(missing / "ev")], ["backup", str(missing / "bk.db")]):
        one_line_error(worker(*args, database=stored), 1, f"directory {missing} does not exist")
        assert not missing.exists()
    one_line_error(
        worker("evidence", "81234567890", "-o", str(missing / "ev.zip"), database=stored), 1, "does not exist"
    )
    made = worker("evidence", "81234567890", "--output", str(tmp_path / "ev"), database=stored)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "ev").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("value", ["maybe", "2", "on"])
def test_a_bad_boolean_parameter_is_a_400_naming_it(client, stored, value):
    response = client.get(f"/api/meetings/81234567890/attendance?include_absent={value}", headers=AUTH)
    assert response.status_code == 400
    assert response.json["parameter"] == "include_absent"


@pytest.mark.parametrize("value", ["1", "true", "0", "no", ""])
def test_good_boolean_parameters_are_taken(client, stored, value):
    response = client.get(f"/api/meetings/81234567890/attendance?include_absent={value}", headers=AUTH)
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("option", ["--stage", "--dropped-at"])
def test_an_unknown_funnel_stage_is_a_usage_error(stored, runner_env, option):
    result = runner_env(["funnel", "81234567890", option, "bogus"])
    assert result.exit_code == 2, result.output
    assert "no stage 'bogus'" in result.output and option in result.output


def test_the_backup_hint_works_from_any_directory(stored, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = worker("backup", str(tmp_path / "copy.db"), database=stored, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    [hint] = [line for line in result.stderr.splitlines() if line.startswith("check the copy: ")]
    command = hint.removeprefix("check the copy: ")
    assert command.split()[0] == sys.executable  # the same Python
    check = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("OK ")


@pytest.mark.parametrize("command", ["serve", "run"])
def test_the_service_starts_from_any_directory(tmp_path, command):
    """gunicorn imports its config module before --chdir: from elsewhere it must still find it."""
    env = process_env(tmp_path / "a.db")
    port = free_port()
    proc = start_command(command, env, "--port", str(port), cwd=tmp_path)
    try:
        wait_for_line(proc, f"Listening at: http://127.0.0.1:{port}")
        deadline = time.monotonic() + 45
        while True:  # a worker answers: it imported the app from the checkout
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.process.poll() is None, proc.log()[-3000:]
                time.sleep(0.2)
    finally:
        if proc.process.poll() is None:
            stop_with(proc, signal.SIGTERM)
    assert "No module named" not in proc.log()
