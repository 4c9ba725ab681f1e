"""PostgreSQL mode's operator errors (issue 19 trial): one line, the fix named, no password shown.

Passwords never reach a message (whatever the scheme, unencoded characters in them, or a URL
given where click did not expect it) nor pg_dump's command line; configuration mistakes are
permanent errors, not "try again"; read commands refuse a database without the tables."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys

import psycopg
import pytest
from click.testing import CliRunner

import worker
from integrations.cli import context
from integrations.cli.context import WORKER_PY
from integrations.config import ConfigError, database_path_from_url
from store.db import open_db
from store.errors import DatabaseOpenError, DatabaseUrlError
from store.migrations import migrate
from store.postgres import PERCENT_ENCODE_HINT, check_url, connect_error, redact, redact_text, without_password

SECRET = "S3cretPW"


def run(*args: str):
    return CliRunner().invoke(worker.cli, list(args), catch_exceptions=False)


def one_line_without_secret(result, *secrets: str) -> str:
    for secret in secrets or (SECRET,):
        assert secret not in result.output, result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


def with_password(url: str, password: str) -> str:
    """`url` (postgresql://user@host...) with `password` added after the user."""
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{password}@{host}"


def host_part(url: str) -> str:
    return url.split("@", 1)[1].split("/", 1)[0]


@pytest.fixture
def pg_config(config, monkeypatch):
    """Point the CLI's configuration at a PostgreSQL URL."""

    def use(url: str):
        monkeypatch.setattr(context, "load_config", lambda: dataclasses.replace(config, database_path=url))

    return use


def has_tables(url: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is not None


# --- 1, 2: redaction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://attendance:p@ss:w/rd#1%x@127.0.0.1:55432/attendance", "postgresql://attendance:***@127.0.0.1"),
        ("postgressql://attendance:S3cretPW@127.0.0.1/x", "postgressql://attendance:***@127.0.0.1/x"),
        ("mysql://attendance:S3cretPW@127.0.0.1/x", "mysql://attendance:***@127.0.0.1/x"),
        ("postgresql:/attendance:S3cretPW@127.0.0.1/x", "postgresql:/attendance:***@127.0.0.1/x"),
        ("postgresql://attendance@127.0.0.1/x", "postgresql://attendance@127.0.0.1/x"),
    ],
)
def test_redact_masks_up_to_the_last_at_whatever_the_scheme(url, expected):
    assert redact(url).startswith(expected)
    assert "ss:w" not in redact(url) and SECRET not in redact(url)


def test_a_url_that_does_not_parse_is_masked_after_the_scheme():
    assert redact("postgresql://attendance%zz") == "postgresql://***"


def test_redact_text_masks_urls_inside_messages():
    message = "Got unexpected extra argument (postgresql://user:p@ss w@127.0.0.1/x)"
    assert "p@ss" not in redact_text("Got unexpected extra argument (postgresql://user:S3cretPW@127.0.0.1/x)")
    assert redact_text(message).startswith("Got unexpected extra argument (postgresql://user:***@")
    assert redact_text("file /tmp/a.db and http://127.0.0.1:8080/x") == "file /tmp/a.db and http://127.0.0.1:8080/x"


def test_an_unencoded_password_is_a_usage_error_naming_percent_encoding(runner_env):
    url = "postgresql://attendance:p@ss:w/rd#1%x@127.0.0.1:55432/attendance"
    with pytest.raises(DatabaseUrlError):
        check_url(url)
    for args in (["verify", "--database", url], ["backup", "--database", url, "out.dump"]):
        result = run(*args)
        assert result.exit_code == 2, result.output
        output = one_line_without_secret(result, "ss:w", "rd#1")
        assert "percent-encoded" in output


@pytest.mark.parametrize(
    "url",
    [
        "postgressql://attendance:S3cretPW@127.0.0.1/x",
        "mysql://attendance:S3cretPW@127.0.0.1/x",
        "postgresql:/attendance:S3cretPW@127.0.0.1/x",
    ],
)
def test_a_misspelled_scheme_never_prints_the_password(url, runner_env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["verify", "--database", url], ["backup", "--database", url, "out.db"], ["copy-db", url, "x.db"]):
        result = run(*args)
        assert result.exit_code in (1, 2), result.output
        one_line_without_secret(result)


def test_a_url_given_as_an_extra_argument_is_masked_in_click_usage_errors(runner_env):
    result = run("verify", "postgresql://attendance:S3cretPW@127.0.0.1/x")
    assert result.exit_code == 2
    assert "unexpected extra argument (postgresql://attendance:***@127.0.0.1/x)" in one_line_without_secret(result)


def test_a_config_url_with_a_wrong_scheme_names_both_postgresql_spellings():
    with pytest.raises(ConfigError) as raised:
        database_path_from_url(f"postgressql://a:{SECRET}@h/x")
    assert "'postgresql://' or 'postgres://'" in str(raised.value) and SECRET not in str(raised.value)


# --- 4: pg_dump's command line ---------------------------------------------------------


def test_backup_passes_the_password_through_the_environment(pg_url, pg_config, tmp_path, monkeypatch):
    real = shutil.which("pg_dump")
    assert real, "pg_dump missing: apt-get install postgresql-client"
    url = with_password(pg_url, SECRET)
    db = open_db(url)
    migrate(db)
    db.close()
    # A pg_dump in front of the real one records what `ps` would show and its PGPASSWORD.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    record = tmp_path / "record"
    wrapper = bindir / "pg_dump"
    wrapper.write_text(
        f'#!/bin/sh\necho "$*" > {record}\necho "PGPASSWORD=$PGPASSWORD" >> {record}\nexec {real} "$@"\n'
    )
    wrapper.chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    pg_config(url)
    result = run("backup", str(tmp_path / "attendance.dump"))
    assert result.exit_code == 0, result.output
    argv, env = record.read_text().splitlines()
    assert SECRET not in argv and "--dbname=" in argv
    assert env == f"PGPASSWORD={SECRET}"
    assert SECRET not in result.output
    conninfo, password = without_password(url)
    assert password == SECRET and SECRET not in conninfo


# --- 5: configuration mistakes are permanent -------------------------------------------


def test_a_missing_database_and_a_bad_port_are_not_try_again(pg_server, pg_config):
    good = with_password(pg_server.url("postgres"), SECRET)
    for url, reason in (
        (good.rsplit("/", 1)[0] + "/attendanse", 'database "attendanse" does not exist'),
        (good.replace(f":{pg_server.port}/", ":99999/"), "invalid port"),
    ):
        with pytest.raises(DatabaseOpenError):
            open_db(url)
        pg_config(url)
        result = run("meetings")
        assert result.exit_code == 1
        output = one_line_without_secret(result)
        assert reason in output and "cannot connect to" in output and "try again" not in output


def test_a_refused_connection_stays_try_again(pg_config):
    pg_config(f"postgresql://attendance:{SECRET}@127.0.0.1:1/attendance")
    result = run("meetings")
    assert result.exit_code == 1
    assert "try again" in one_line_without_secret(result)


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication failed for user "attendance"',
        "failed to resolve host 'db.internl': [Errno -2] Name or service not known",
    ],
)
def test_wrong_password_and_unknown_host_are_permanent(message):
    # The test server trusts every local connection, and resolving a name depends on the
    # machine's network: libpq's own words stand in for them here.
    error = connect_error(f"postgresql://attendance:{SECRET}@db.internl/attendance", psycopg.OperationalError(message))
    assert isinstance(error, DatabaseOpenError) and SECRET not in str(error)


# --- 6: privileges ---------------------------------------------------------------------


def test_a_role_that_cannot_create_tables_gets_one_line_naming_the_fix(pg_server, pg_url, pg_config, tmp_path):
    with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS limited_role")
        conn.execute("CREATE ROLE limited_role LOGIN")
    try:
        limited = pg_url.replace(f"{pg_server.user}@", "limited_role@", 1)
        source = tmp_path / "source.db"
        db = open_db(str(source))
        migrate(db)
        db.close()
        result = run("copy-db", f"sqlite:///{source}", limited)
        assert result.exit_code == 1
        output = one_line_without_secret(result)
        assert "cannot create tables in schema public" in output and "GRANT CREATE ON SCHEMA public" in output
        pg_config(limited)
        result = run("normalize")
        assert result.exit_code == 1 and "GRANT CREATE ON SCHEMA public" in one_line_without_secret(result)
    finally:
        pg_server.drop_database(pg_url)
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS limited_role")


# --- 7: read commands never migrate ----------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["meetings"], ["summary", "81234567890"], ["verify"], ["export-raw"], ["backup", "out.dump"], ["timeline", "1"]],
)
def test_read_commands_refuse_a_database_without_tables(args, pg_url, pg_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pg_config(with_password(pg_url, SECRET))
    result = run(*args)
    assert result.exit_code == 1, result.output
    assert "no attendance-worker tables: wrong database?" in one_line_without_secret(result)
    assert not has_tables(pg_url)
    assert not (tmp_path / "out.dump").exists()


def test_write_commands_still_migrate_a_new_database(pg_url, pg_config):
    pg_config(pg_url)
    result = run("normalize")
    assert result.exit_code == 0, result.output
    assert has_tables(pg_url)
    assert run("meetings").exit_code == 0


# --- 8: unencoded special characters: refused before connecting, no piece of the password shown ---

# Each holds a character a URL's userinfo cannot hold unencoded; none shares 3 characters
# with the URL around it or the hint.
UNENCODED_PASSWORDS = ["p@ss#1", "Wx/yzQq@Kk", "Ke?yZz#Jj", "Mo:onS@un", "#Hhh@@Jjj", "@Lead#Xxx", "Tr@il@", "Sl/a?sh"]


def password_pieces_in(text: str, password: str) -> list[str]:
    """Every 3-character (or longer) piece of `password` found in `text` (the hint left out)."""
    text = text.replace(PERCENT_ENCODE_HINT, "")
    return sorted(
        {password[i:j] for i in range(len(password)) for j in range(i + 3, len(password) + 1) if password[i:j] in text}
    )


def operator_url(password: str, port: int = 55432) -> str:
    return f"postgresql://attendance:{password}@127.0.0.1:{port}/attendance"


@pytest.mark.parametrize("password", UNENCODED_PASSWORDS)
def test_worker_verify_refuses_an_unencoded_password_with_the_hint_and_shows_none_of_it(password, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PGPASSWORD")}
    env["DATABASE_URL"] = operator_url(password)
    result = subprocess.run(
        [sys.executable, WORKER_PY, "verify"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "percent-encoded" in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "postgresql://attendance:***@127.0.0.1:55432/attendance" in result.stderr or "://***@" in result.stderr
    assert password_pieces_in(result.stdout + result.stderr, password) == []


@pytest.mark.parametrize("password", UNENCODED_PASSWORDS)
def test_every_command_refuses_an_unencoded_password_without_showing_a_piece(
    password, pg_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    pg_config(operator_url(password))
    for args in (["meetings"], ["verify"], ["backup", "out.dump"], ["normalize"]):
        result = CliRunner().invoke(worker.cli, args, catch_exceptions=False)
        assert result.exit_code == 2, (args, result.output)
        assert "percent-encoded" in result.output and result.output.count("\n") == 1
        assert password_pieces_in(result.output, password) == [], (args, result.output)
    doctor = CliRunner().invoke(worker.cli, ["doctor"], catch_exceptions=False)
    assert doctor.exit_code == 1 and "percent-encode" in doctor.output
    assert password_pieces_in(doctor.output, password) == [], doctor.output


@pytest.mark.parametrize("password", UNENCODED_PASSWORDS)
def test_a_libpq_message_quoting_a_piece_of_the_password_is_scrubbed(password):
    # What libpq says when it takes what follows the first '@' or '/' for the host or port.
    url = operator_url(password)
    after_at = url.split("@", 1)[1].split("/", 1)[0]
    after_slash = url.split("://", 1)[1].split("/", 1)[1] if "/" in password else ""
    for message in (
        f"failed to resolve host '{after_at}': [Errno -2] Name or service not known",
        f'invalid integer value "{password}" for connection option "port"',
        f'FATAL:  database "{after_slash}" does not exist',
    ):
        error = connect_error(url, psycopg.OperationalError(message))
        assert password_pieces_in(str(error), password) == [], str(error)


def test_a_colon_in_the_password_still_parses_and_a_percent_encoded_url_still_works():
    check_url("postgresql://attendance:Mo:on@127.0.0.1/attendance")  # libpq splits at the first ':' only
    check_url("postgresql://attendance:p%40ss%231@127.0.0.1/attendance")
    check_url("postgresql://attendance@/attendance?host=/var/run/postgresql")
