"""`worker.py copy-db` (issue 19): SQLite -> PostgreSQL -> SQLite keeps every row and the chain."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import worker
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator
from store.audit import open_readonly, verify_chain
from store.db import Store, open_db
from store.migrations import migrate
from tests.attendance_support import registrant, report_row
from tests.certificates_support import certificate_config, finished_meeting
from tests.funnel_support import PASS_PERCENT, WEBINAR, scenario
from tests.zoom_support import FakeClock, simulator_client


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def copy_db(*args: str):
    return CliRunner().invoke(worker.cli, ["copy-db", *args], catch_exceptions=False)


@pytest.fixture
def realistic(client, config, runner_env, tmp_path) -> str:
    """A database with webhooks, a report sync, a funnel with quiz and import, and certificates."""
    sc = finished_meeting(client, config)
    rows = [report_row("u0", "Zoë Ångström-Nøkleby", "10:00", "11:00", user_email="zoe@example.org")]
    sc.report(rows, [registrant("R1", "zoe@example.org", "Zoë", "Ångström-Nøkleby")])
    funnel = scenario(80)
    db = open_db(config.database_path)
    try:
        with ZoomSimulator(funnel.dataset) as sim:
            sync_meeting(db, simulator_client(sim, FakeClock()), WEBINAR)
    finally:
        db.close()
    csv_path = tmp_path / "registrations.csv"
    csv_path.write_bytes(funnel.csv)
    ok(runner_env(["import-registrations", WEBINAR, str(csv_path)]))
    ok(runner_env(["rules", WEBINAR, "--min-minutes", "60", "--pass-percent", str(PASS_PERCENT)]))
    ok(runner_env(["funnel", WEBINAR]))
    ok(runner_env(["certificates", "keygen"]))
    ok(runner_env(["certificates", "issue", sc.meeting_id, "--min-minutes", "30"]))
    ok(runner_env(["attendance", sc.meeting_id]))  # derived tables refreshed
    return f"sqlite:///{config.database_path}"


def dump(db: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, bodies as bytes: to compare two stores row by row."""
    tables = db.data_tables()
    out = {}
    for table in tables:
        columns = sorted(c for c in db.table_columns(table))
        names = ", ".join(f'"{c}"' for c in columns)
        rows = [
            tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
            for r in db.execute(f'SELECT {names} FROM "{table}"')
        ]
        out[table] = sorted(rows, key=repr)
    return out


def test_sqlite_to_postgresql_and_back_keeps_every_row_and_the_chain(realistic, pg_url, tmp_path):
    first = copy_db(realistic, pg_url, "--batch-rows", "7")  # several batches per table
    ok(first)
    assert "raw_records: " in first.output
    source = open_readonly(realistic.removeprefix("sqlite:///"))
    pg = open_db(pg_url)
    back_path = tmp_path / "back.db"
    try:
        head = verify_chain(source)
        assert head.count >= 20  # webhooks, report pages, the funnel's polls and import
        assert f"head {head.chain_hash} (record {head.record_id})" in first.output
        assert verify_chain(pg) == head
        original = dump(source)
        assert original["raw_records"] and original["certificates"] and original["funnel_people"]
        assert dump(pg) == {t: rows for t, rows in original.items()} | {"webhook_intake": []}
        second = ok(copy_db(pg_url, f"sqlite:///{back_path}"))
        assert f"head {head.chain_hash}" in second.output
        back = open_readonly(str(back_path))
        try:
            assert dump(back) == original
            assert verify_chain(back) == head
        finally:
            back.close()
    finally:
        source.close()
        pg.close()
    # verify, the command, on the copy
    result = CliRunner().invoke(worker.cli, ["verify", "--database", str(back_path)], catch_exceptions=False)
    assert result.exit_code == 0 and f"head {head.chain_hash}" in result.output, result.output


def test_a_target_holding_evidence_is_refused_and_left_alone(realistic, tmp_path):
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    ok(copy_db(realistic, target))
    db = open_db(str(tmp_path / "copy.db"))
    before = dump(db)
    db.close()
    result = copy_db(realistic, target)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "already holds" in result.output and "raw records" in result.output
    db = open_db(str(tmp_path / "copy.db"))
    assert dump(db) == before
    db.close()


def test_a_freshly_migrated_target_is_filled(realistic, pg_url):
    db = open_db(pg_url)
    migrate(db)
    db.close()
    ok(copy_db(realistic, pg_url))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mysql://x/y", "sqlite:///t.db"], "SOURCE_URL must start with"),
        (["sqlite:///missing.db", "sqlite:///t.db"], "does not exist"),
        (["sqlite:///a.db", "sqlite:///a.db"], "the same database"),
    ],
)
def test_bad_arguments_are_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = copy_db(*args)
    assert result.exit_code in (1, 2) and message in result.output
    assert result.output.count("\n") == 1, result.output
    assert not (tmp_path / "t.db").exists()


def test_an_unreachable_server_is_one_line(realistic, pg_server):
    result = copy_db(realistic, f"postgresql://{pg_server.user}:secret@127.0.0.1:1/none")
    assert result.exit_code == 1 and "cannot connect" in result.output and "secret" not in result.output
    assert result.output.count("\n") == 1, result.output


def _unmigrated(url: str) -> str:
    return "no attendance-worker tables"


def _other_schema(url: str) -> str:
    db = open_db(url)
    migrate(db)
    db.execute("ALTER TABLE instances ADD COLUMN added_later TEXT")
    db.close()
    return "target table instances has no column added_later"


@pytest.mark.parametrize("source", [_unmigrated, _other_schema], ids=["empty source", "other schema"])
def test_a_refused_copy_leaves_no_new_sqlite_file_behind(pg_url, tmp_path, source):
    """Regression: a refused copy left a migrated, empty SQLite file (and its directory) at TARGET."""
    message = source(pg_url)
    result = copy_db(pg_url, f"sqlite:///{tmp_path / 'new' / 'deeper' / 'copy.db'}")
    assert result.exit_code == 1 and message in result.output
    assert result.output.count("\n") == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_refused_copy_leaves_an_existing_target_file_as_it_was(pg_url, tmp_path):
    target = tmp_path / "mine.db"
    db = open_db(str(target))
    migrate(db)
    db["state"].insert({"key": "operator-note", "value": "kept"})
    db.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    message = _other_schema(pg_url)
    result = copy_db(pg_url, f"sqlite:///{target}")
    assert result.exit_code == 1 and message in result.output
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
