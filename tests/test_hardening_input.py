"""Bad input (issue 14): every CLI user error is one line on stderr with exit 2 (usage) or 1
(runtime), never a traceback; every bad query parameter of the read API is a 400 JSON naming
the parameter, never a 500 (a Hypothesis test fuzzes them); read commands create nothing."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.attendance_support import Scenario
from tests.audit_support import ROOT
from tests.conftest import API_TOKEN
from tests.test_attendance_scenarios import MEETING, MEETING_UUID, meeting_webhooks

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
READ_COMMANDS = [
    ["meetings"],
    ["attendance", MEETING],
    ["summary", MEETING],
    ["timeline", MEETING],
    ["problems"],
    ["poll-status"],
    ["verify"],
    ["export-raw"],
    ["evidence", MEETING, "-o", "bundle-out"],
]


def worker(*args: str, database: str | os.PathLike, cwd: Path = ROOT, env: dict | None = None, prefix=()):
    """`python worker.py ARGS` with DATABASE_URL naming `database`."""
    environ = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{os.path.abspath(database)}",
        "ZOOM_WEBHOOK_SECRET_TOKEN": "s",
        **(env or {}),
    }
    return subprocess.run(
        [*prefix, sys.executable, str(ROOT / "worker.py"), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """Assert exit `code` and a single `Error: ...` line naming `words`; return that line."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture
def stored(client, config):
    """A database holding one meeting, as the service stored it."""
    meeting_webhooks(Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID))
    return config.database_path


# --- CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, option",
    [
        (["export-raw", "--since", "0001-01-01T00:00:00+00:01"], "--since"),
        (["export-raw", "--until", "9999-12-31T23:59:59-23:59"], "--until"),
        (["export-raw", "--since", "2024-13-45"], "--since"),
        (["attendance", MEETING, "--min-minutes", "nan"], "--min-minutes"),
        (["attendance", MEETING, "--min-minutes", "inf"], "--min-minutes"),
        (["attendance", MEETING, "--min-minutes", "-1"], "--min-minutes"),
        (["summary", MEETING, "--min-percent", "-inf"], "--min-percent"),
        (["summary", MEETING, "--min-percent", "101"], "--min-percent"),
        (["evidence", MEETING, "-o", "x", "--min-minutes", "NaN"], "--min-minutes"),
        (["timeline", MEETING, "--step", "-5"], "--step"),
        (["timeline", MEETING, "--step", "0"], "--step"),
        (["meetings", "--bogus"], "--bogus"),
    ],
)
def test_bad_values_are_one_usage_line_and_exit_2(stored, tmp_path, args, option):
    one_line_error(worker(*args, database=stored, cwd=tmp_path), 2, option)


def test_an_unknown_meeting_is_one_line_and_exit_1(stored):
    one_line_error(worker("attendance", "99999999999", database=stored), 1, "99999999999")
    one_line_error(worker("summary", "no-such-uuid==", database=stored), 1, "no-such-uuid==")


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: a[0])
def test_read_commands_refuse_a_missing_database_and_create_nothing(tmp_path, args):
    work = tmp_path / "work"
    work.mkdir()
    missing = tmp_path / "typo" / "nested" / "attendance.db"
    one_line_error(worker(*args, database=missing, cwd=work), 1, str(missing), "does not exist")
    assert not (tmp_path / "typo").exists()
    assert list(work.iterdir()) == []


@pytest.mark.parametrize("args", READ_COMMANDS + [["normalize"], ["rebuild"]], ids=lambda a: a[0])
def test_a_directory_or_a_non_sqlite_file_is_one_line(tmp_path, args):
    directory = tmp_path / "a-directory.db"
    directory.mkdir()
    one_line_error(worker(*args, database=directory, cwd=tmp_path), 1, "is a directory")
    text_file = tmp_path / "notes.db"
    text_file.write_text("not a database\n")
    one_line_error(worker(*args, database=text_file, cwd=tmp_path), 1, "not a SQLite database")
    assert text_file.read_text() == "not a database\n"


def test_an_empty_file_is_not_an_attendance_database_for_readers(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    one_line_error(worker("meetings", database=empty), 1, "empty file")
    assert empty.stat().st_size == 0


def _without_root_override() -> tuple[str, ...]:
    """A command prefix under which file permissions bind (root ignores them otherwise)."""
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop root's permission override"
    return (setpriv, "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--")


@pytest.mark.parametrize("args", [["meetings"], ["attendance", MEETING], ["normalize"], ["problems"]])
def test_a_read_only_database_is_one_line(stored, tmp_path, args):
    copy = tmp_path / "readonly.db"
    source = sqlite3.connect(stored)
    target = sqlite3.connect(copy)
    source.backup(target)
    target.close()
    source.close()
    os.chmod(copy, 0o444)
    one_line_error(worker(*args, database=copy, cwd=tmp_path, prefix=_without_root_override()), 1, "read-only")


def test_a_read_only_database_can_still_be_verified_and_exported(stored, tmp_path):
    copy = tmp_path / "readonly.db"
    source, target = sqlite3.connect(stored), sqlite3.connect(copy)
    source.backup(target)
    target.execute("PRAGMA journal_mode=DELETE")
    target.close()
    source.close()
    os.chmod(copy, 0o444)
    prefix = _without_root_override()
    assert worker("verify", "--database", str(copy), database=copy, prefix=prefix).returncode == 0
    assert worker("export-raw", "--database", str(copy), database=copy, prefix=prefix).returncode == 0


# --- HTTP -------------------------------------------------------------------------------------


def get(client, url):
    return client.get(url, headers=AUTH)


@pytest.mark.parametrize(
    "url, parameter",
    [
        ("/api/raw-events?until=9999-12-31T23:59:59-23:59", "until"),
        ("/api/raw-events?since=0001-01-01T00:00:00%2B00:01", "since"),
        ("/api/raw-events?since=tomorrow", "since"),
        ("/api/raw-events?format=xml", "format"),
        (f"/api/meetings/{MEETING}/attendance?min_minutes=nan", "min_minutes"),
        (f"/api/meetings/{MEETING}/attendance?min_minutes=inf", "min_minutes"),
        (f"/api/meetings/{MEETING}/attendance?min_minutes=-1", "min_minutes"),
        (f"/api/meetings/{MEETING}/summary?min_percent=1e400", "min_percent"),
        (f"/api/meetings/{MEETING}/summary?min_percent=101", "min_percent"),
        (f"/api/meetings/{MEETING}/summary?min_minutes=1&min_percent=1", "min_percent"),
        (f"/api/meetings/{MEETING}/timeline?step=0", "step"),
        (f"/api/meetings/{MEETING}/timeline?step=-1", "step"),
        (f"/api/meetings/{MEETING}/timeline?step=1.5", "step"),
        (f"/api/meetings/{MEETING}/timeline?step=99999999999999999999", "step"),
        (f"/api/meetings/{MEETING}/attendance?format=xml", "format"),
        (f"/api/meetings/{MEETING}/funnel?pass_percent=nan", "pass_percent"),
        (f"/api/meetings/{MEETING}/funnel?pass_percent=101", "pass_percent"),
        (f"/api/meetings/{MEETING}/funnel?min_minutes=inf", "min_minutes"),
        (f"/api/meetings/{MEETING}/funnel?stage=everyone", "stage"),
        (f"/api/meetings/{MEETING}/funnel?stage=joined&dropped_at=attended", "dropped_at"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_parameter(stored, client, url, parameter):
    response = get(client, url)
    assert response.status_code == 400, response.data
    body = response.get_json()
    assert body["parameter"] == parameter and parameter in body["message"]
    strict_json(response.data)


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NASTY = st.sampled_from(
    [
        "nan",
        "-nan",
        "inf",
        "-inf",
        "Infinity",
        "1e400",
        "-1e400",
        "-0",
        "0",
        "1",
        "1.5",
        "99999999999999999999999",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+00:01",
        "0001-01-01",
        "9999-12-31",
        "2024-05-01T10:00:00Z",
        "..",
        "../..",
        "%00",
        "\x00",
        "",
        " ",
        "json",
        "csv",
        "jsonl",
        "true",
    ]
)
STAGE_NAMES = st.sampled_from(["registered", "zoom_registered", "joined", "attended", "answered", "passed"])
VALUES = st.one_of(NASTY, STAGE_NAMES, st.text(max_size=30), st.floats().map(repr), st.integers().map(str))
PARAMETERS = st.dictionaries(
    st.sampled_from(
        [
            "min_minutes",
            "min_percent",
            "pass_percent",
            "step",
            "format",
            "include_absent",
            "instance",
            "since",
            "until",
            "meeting",
            "stage",
            "dropped_at",
        ]
    ),
    VALUES,
    max_size=4,
)
PATHS = st.one_of(
    st.sampled_from(["/api/meetings", "/api/raw-events"]),
    st.tuples(
        st.one_of(
            st.just(MEETING),
            st.just(quote(MEETING_UUID, safe="")),
            st.text(min_size=1, max_size=20).map(lambda s: quote(s, safe="")),
        ),
        st.sampled_from(["attendance", "summary", "timeline", "funnel"]),
    ).map(lambda t: f"/api/meetings/{t[0]}/{t[1]}"),
)


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory):
    from integrations.web import create_app
    from tests.conftest import make_config

    config = make_config(tmp_path_factory.mktemp("fuzz"))
    app = create_app(config)
    meeting_webhooks(Scenario(app.test_client(), config, meeting_id=MEETING, uuid=MEETING_UUID))
    return app


@FUZZ
@given(path=PATHS, params=PARAMETERS)
def test_fuzzed_read_api_queries_never_get_a_500(fuzz_app, path, params):
    client = fuzz_app.test_client()
    query = urlencode(params)
    response = client.get(path + ("?" + query if query else ""), headers=AUTH)
    data = response.get_data()  # a streamed answer fails while it is read, not before
    assert response.status_code in (200, 400, 404), (response.status_code, data[:300])
    if response.status_code != 200:
        body = response.get_json()
        assert body["error"] and body["message"]
    if response.status_code == 400 and body.get("parameter"):
        assert body["parameter"] in params
    if response.mimetype == "application/json":
        strict_json(data)


def strict_json(data: bytes):
    """Parse JSON refusing the bare NaN and Infinity that Python's encoder writes for floats."""

    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(data, parse_constant=refuse)


def test_the_funnel_takes_a_pass_percent_for_one_query(stored, client):
    response = get(client, f"/api/meetings/{MEETING}/funnel?pass_percent=70")
    assert response.status_code == 200, response.data
    assert response.get_json()["rules"]["pass_percent"] == 70
