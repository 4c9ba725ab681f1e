"""`worker.py doctor`'s database line (issue 19 trial): it checks the database as it is, never
creating or migrating it, and a failure names its cause and the fix for that cause."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from click.testing import CliRunner

import worker
from integrations.cli import context
from store.db import open_db
from store.migrations import migrate
from tests.conftest import make_config

SECRET = "S3cretPW"
NO_TABLES = "no attendance-worker tables: wrong database?"


def run_doctor(monkeypatch, tmp_path, database_url: str):
    config = make_config(tmp_path, DATABASE_URL=database_url)
    monkeypatch.setattr(context, "load_config", lambda: config)
    return CliRunner().invoke(worker.cli, ["doctor"], catch_exceptions=False)


def database_lines(output: str) -> list[str]:
    """The database line and its fix line, if any."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line[6:].startswith("database"):
            following = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].startswith("      fix:") else ""
            return [line, following]
    raise AssertionError(output)


def has_tables(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is not None


def test_a_missing_sqlite_database_fails_and_nothing_is_created(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "x.db"
    result = run_doctor(monkeypatch, tmp_path, f"sqlite:///{missing}")
    assert result.exit_code == 1
    line, fix = database_lines(result.output)
    assert line.startswith("FAIL") and NO_TABLES in line and "does not exist" in line
    assert "run the service once" in fix and "DATABASE_URL" in fix
    assert not (tmp_path / "nope").exists()
    assert "database writable" not in result.output


def test_a_sqlite_file_without_the_tables_fails_and_is_not_migrated(tmp_path, monkeypatch):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    conn.close()
    result = run_doctor(monkeypatch, tmp_path, f"sqlite:///{other}")
    assert result.exit_code == 1
    line, fix = database_lines(result.output)
    assert line.startswith("FAIL") and NO_TABLES in line and "run the service once" in fix
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["notes"]
    conn.close()


def test_a_migrated_sqlite_database_passes(tmp_path, monkeypatch):
    db = open_db(str(tmp_path / "attendance.db"))
    migrate(db)
    db.close()
    result = run_doctor(monkeypatch, tmp_path, f"sqlite:///{tmp_path / 'attendance.db'}")
    assert "ok    database writable" in result.output and "FAIL  database" not in result.output


def test_an_empty_postgresql_database_fails_and_gets_no_tables(pg_url, tmp_path, monkeypatch):
    result = run_doctor(monkeypatch, tmp_path, pg_url)
    assert result.exit_code == 1
    line, fix = database_lines(result.output)
    assert line.startswith("FAIL") and NO_TABLES in line and "run the service once" in fix
    assert not has_tables(pg_url)


def test_a_migrated_postgresql_database_passes(pg_url, tmp_path, monkeypatch):
    db = open_db(pg_url)
    migrate(db)
    db.close()
    result = run_doctor(monkeypatch, tmp_path, pg_url)
    assert "ok    database writable" in result.output and "FAIL  database" not in result.output


def with_password(url: str, password: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


@pytest.mark.parametrize(
    ("change", "cause", "fix"),
    [
        (
            lambda url, port: url.rsplit("/", 1)[0] + "/attendanse",
            'database "attendanse" does not exist',
            "database name",
        ),
        (lambda url, port: url.replace(f":{port}/", ":1/"), "Connection refused", "server is running"),
        (lambda url, port: url.replace(f":{port}/", ":99999/"), "invalid port", "port"),
        (lambda url, port: url.replace(f":{SECRET}@", f":{SECRET}@x%zz@"), "cannot parse", "percent-encode"),
    ],
    ids=["unknown database", "closed port", "bad port", "unencoded password"],
)
def test_each_postgresql_cause_is_shown_with_its_own_fix(pg_server, tmp_path, monkeypatch, change, cause, fix):
    url = change(with_password(pg_server.url("postgres"), SECRET), pg_server.port)
    result = run_doctor(monkeypatch, tmp_path, url)
    assert result.exit_code == 1
    line, fix_line = database_lines(result.output)
    assert line.startswith("FAIL") and cause in line, line
    assert fix in fix_line and "directory" not in fix_line, fix_line
    assert SECRET not in result.output and "zz" not in result.output
