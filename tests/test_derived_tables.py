"""Derived attendance tables in SQLite (issue 8): kept current, rebuildable, readable with plain SQL."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import integrations.jobs.scheduler as scheduler
from integrations.derived import refresh
from integrations.derived.refresh import RefreshPacer, refresh_instances
from integrations.ingest.normalize import normalize_pending
from integrations.web import create_app
from integrations.zoom.reports import participant_to_row
from store import derived
from store.db import open_db
from store.derived import RefreshStats, is_current
from store.evidence import RawPage, store_delivery
from store.migrations import migrate, migrations
from store.reports import save_report_page, start_fetch
from tests.attendance_support import Scenario, by_key, cli, report_row, table_dump
from tests.conftest import make_config
from tests.test_attendance_scenarios import (
    MEETING,
    MEETING_REPORT,
    MEETING_UUID,
    WEBINAR,
    WEBINAR_REGISTRANTS,
    WEBINAR_REPORT,
    WEBINAR_UUID,
    meeting_webhooks,
    webinar_webhooks,
)

DERIVED = ("attendance_instances", "people", "attendance", "attendance_sessions")


@pytest.fixture
def worker_job(config, monkeypatch):
    """The worker's own normalize job, as the scheduler runs it every second."""
    monkeypatch.setattr(scheduler, "worker_pacer", RefreshPacer(clock=lambda: 0.0))  # never holds back
    return lambda: scheduler.normalize_job(config)


class Recorder:
    """A Scenario stand-in that records the deliveries instead of posting them."""

    def __init__(self, sc: Scenario) -> None:
        self.sc, self.events = sc, []

    def __getattr__(self, name):
        return getattr(self.sc, name)

    def post(self, event) -> None:
        self.events.append(event)

    def started(self, at):
        Scenario.started(self, at)

    def ended(self, at, start="10:00"):
        Scenario.ended(self, at, start)

    def joined(self, *a, **kw):
        Scenario.joined(self, *a, **kw)

    def left(self, *a, **kw):
        Scenario.left(self, *a, **kw)


def recorded_meeting(client, config) -> tuple[Scenario, list[dict]]:
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    recorder = Recorder(sc)
    meeting_webhooks(recorder)
    return sc, recorder.events


def test_incremental_refreshes_equal_a_rebuild(client, config, db, worker_job):
    sc, events = recorded_meeting(client, config)
    rng = random.Random(8)
    delivered = [e for i, e in enumerate(events) if i not in (9, 23)]  # two events lost for good
    delivered += rng.sample(delivered, 6)  # redeliveries
    for i in rng.sample(range(len(delivered)), 8):  # retries that Zoom stamped again
        delivered.append({**delivered[i], "event_ts": delivered[i]["event_ts"] + 5000})
    rng.shuffle(delivered)  # no ordering guarantee: leaves before joins, ended before started
    for i, event in enumerate(delivered):
        sc.post(event)
        if i % 3 == 0:
            worker_job()  # the worker refreshes while deliveries keep coming
    worker_job()
    live = table_dump(db)
    assert live["people"] and is_current(db, MEETING_UUID)
    assert cli(config, "rebuild", MEETING)["instances"] == 1 and table_dump(db) == live  # before the report too
    sc.report(MEETING_REPORT)  # the report sync refreshes the instance itself
    incremental = table_dump(db)
    assert incremental != live and is_current(db, MEETING_UUID)

    result = cli(config, "rebuild")
    assert result["instances"] == 1 and result["deliveries_renormalized"] == len({json.dumps(e) for e in delivered})
    assert table_dump(db) == incremental  # row for row

    # The same evidence, delivered in order into another database and computed once: the same rows.
    other_config = make_config(Path(config.database_path).parent / "other")
    other = Scenario(create_app(other_config).test_client(), other_config, meeting_id=MEETING, uuid=MEETING_UUID)
    for event in sorted(delivered, key=lambda e: json.dumps(e)):
        other.post(event)
    other.report(MEETING_REPORT)
    scheduler.normalize_job(other_config)  # its worker's first run, after everything arrived
    other_db = open_db(other_config.database_path)
    try:
        assert table_dump(other_db) == incremental
    finally:
        other_db.close()


def test_the_worker_job_keeps_tables_current(client, config, db, worker_job):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.started("10:00")
    sc.joined("1", "Ann", "10:00", email="ann@x.org")
    assert db.execute("SELECT count(*) FROM attendance").fetchone()[0] == 0  # not in the request path
    worker_job()
    row = db.execute("SELECT person_key, attended_seconds, open_since, in_meeting FROM attendance").fetchone()
    assert row == ("email:ann@x.org", 0, "2024-05-01T10:00:00Z", 1)
    session = db.execute("SELECT start_time, end_time, seconds, open FROM attendance_sessions").fetchone()
    assert session == ("2024-05-01T10:00:00Z", None, None, 1)
    sc.left("1", "Ann", "10:40", email="ann@x.org")
    sc.ended("11:00")
    worker_job()
    row = db.execute("SELECT attended_seconds, open_since, in_meeting, last_leave FROM attendance").fetchone()
    assert row == (2400, None, 0, "2024-05-01T10:40:00Z")


def test_the_attendees_view_counts_an_open_session_until_now(client, config, db, worker_job):
    start = datetime.now(UTC) - timedelta(minutes=5)
    sc = Scenario(client, config, meeting_id=MEETING, uuid="live==", day=start.strftime("%Y-%m-%d"))
    sc.joined("1", "Ann", start.strftime("%H:%M:%S"), email="ann@x.org")
    worker_job()
    seconds = db.execute("SELECT attended_seconds FROM attendees WHERE person_key = 'email:ann@x.org'").fetchone()[0]
    assert 300 <= seconds <= 300 + 120
    assert db.execute("SELECT attended_seconds FROM attendance").fetchone()[0] == 0  # stored rows never read the clock


def test_plain_sql_answers_who_attended_60_minutes_like_the_cli(client, config):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    meeting_webhooks(sc)
    sc.report(MEETING_REPORT)
    from_cli = cli(config, "attendance", MEETING, "--min-minutes", "60")
    expected = sorted((a["name"], a["attended_seconds"]) for a in from_cli["attendees"] if a["eligible"])
    assert expected  # Bob
    sqlite_utils_cli = Path(sys.executable).with_name("sqlite-utils")
    answer = subprocess.run(
        [
            str(sqlite_utils_cli),
            "query",
            config.database_path,
            "select p.name, a.attended_seconds from attendance a "
            "join people p on p.instance_uuid = a.instance_uuid and p.person_key = a.person_key "
            "where a.instance_uuid = :uuid and a.attended_seconds >= 3600 order by p.name",
            "-p",
            "uuid",
            MEETING_UUID,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert sorted((r["name"], r["attended_seconds"]) for r in json.loads(answer.stdout)) == expected
    # Every person and their seconds, through the view SQL users and Datasette see.
    view = subprocess.run(
        [str(sqlite_utils_cli), "query", config.database_path, "select person_key, attended_seconds from attendees"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    all_cli = cli(config, "attendance", MEETING)["attendees"]
    assert {r["person_key"]: r["attended_seconds"] for r in json.loads(view.stdout)} == {
        a["person_key"]: a["attended_seconds"] for a in all_cli
    }


def test_sessions_add_up_to_attended_seconds(client, config, db):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    meeting_webhooks(sc)
    sc.report(MEETING_REPORT)
    mismatched = db.execute(
        "SELECT a.person_key FROM attendance a LEFT JOIN (SELECT instance_uuid, person_key, sum(seconds) AS total "
        "FROM attendance_sessions GROUP BY 1, 2) s USING (instance_uuid, person_key) "
        "WHERE coalesce(s.total, 0) != a.attended_seconds"
    ).fetchall()
    assert mismatched == []
    sessions = db.execute(
        "SELECT start_time, end_time, seconds FROM attendance_sessions WHERE person_key = 'email:ann@x.org' ORDER BY 1"
    ).fetchall()
    assert sessions == [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:20:00Z", 1200),
        ("2024-05-01T10:25:00Z", "2024-05-01T11:00:00Z", 2100),
    ]


def test_registrants_who_never_came_are_a_query_away(client, config, db, worker_job):
    sc = Scenario(client, config, meeting_id=WEBINAR, uuid=WEBINAR_UUID, kind="webinar")
    webinar_webhooks(sc)
    sc.report(WEBINAR_REPORT, registrants=WEBINAR_REGISTRANTS)
    worker_job()  # the registrants arrived after the report's refresh: marked, then refreshed
    rows = db.execute(
        "SELECT registrant_id, attended, attended_seconds FROM registrant_attendance ORDER BY registrant_id"
    ).fetchall()
    assert rows == [("R-ivy", 1, 3000), ("R-jo", 0, 0), ("R-lea", 1, 1800), ("R-max", 0, 0)]


def test_refresh_writes_only_what_changed_in_short_transactions(client, config, db, monkeypatch):
    monkeypatch.setattr(derived, "CHUNK_ROWS", 7)
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.started("10:00")
    for i in range(20):
        sc.joined(str(i), f"P{i}", f"10:{i:02d}", email=f"p{i}@x.org")
        sc.left(str(i), f"P{i}", f"10:{30 + i:02d}", email=f"p{i}@x.org")
    sc.ended("11:00")
    normalize_pending(db)
    stats = RefreshStats()
    refresh_instances(db, [MEETING_UUID], stats=stats)
    # 60 rows of people, attendance and sessions by 7, between the instance row's marker and
    # the final transaction (the instance row and its refresh time).
    assert (stats.rows_written, stats.transactions) == (60 + 3, 1 + 9 + 1)
    first = table_dump(db)

    sc.joined("late", "P3", "10:50", email="p3@x.org")  # P3 comes back: only P3's rows change
    normalize_pending(db)
    stats = RefreshStats()
    refresh_instances(db, [MEETING_UUID], stats=stats)
    # P3's people row (a new connection id), attendance row and new session; the instance row twice.
    assert stats.rows_written == 3 + 3
    assert (
        by_key(cli(config, "attendance", MEETING)["attendees"])["email:p3@x.org"]["attended_seconds"]
        == 30 * 60 + 10 * 60
    )
    assert refresh_instances(db, [MEETING_UUID]) == []  # nothing new: nothing written
    assert table_dump(db) != first
    refresh.rebuild(db)
    assert by_key(cli(config, "attendance", MEETING)["attendees"])["email:p3@x.org"]["segments"] == 2


def test_readers_refresh_what_changed_behind_the_worker(client, config, db):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.started("10:00")
    sc.joined("1", "Ann", "10:00", email="ann@x.org")
    sc.left("1", "Ann", "10:10", email="ann@x.org")
    assert cli(config, "attendance", MEETING)["attendees"][0]["attended_seconds"] == 600
    sc.joined("2", "Ann", "10:20", email="ann@x.org")
    sc.left("2", "Ann", "10:30", email="ann@x.org")
    normalize_pending(db)  # as another process would, without refreshing
    assert not is_current(db, MEETING_UUID) and derived.dirty_instances(db) == [MEETING_UUID]
    assert cli(config, "attendance", MEETING)["attendees"][0]["attended_seconds"] == 1200
    assert is_current(db, MEETING_UUID) and derived.dirty_instances(db) == []


def test_rebuild_of_one_meeting_leaves_the_others(client, config, db):
    a = Scenario(client, config, meeting_id=MEETING, uuid="a==")
    b = Scenario(client, config, meeting_id="82200000003", uuid="b==")
    for sc in (a, b):
        sc.joined("1", "Ann", "10:00", email="ann@x.org")
        sc.left("1", "Ann", "10:10", email="ann@x.org")
    cli(config, "meetings")
    before = table_dump(db)
    marker = db.execute("SELECT rowid FROM people WHERE instance_uuid = 'b=='").fetchone()
    result = cli(config, "rebuild", MEETING)
    assert result["instances"] == 1 and result["deliveries_renormalized"] == 2
    assert table_dump(db) == before
    assert db.execute("SELECT rowid FROM people WHERE instance_uuid = 'b=='").fetchone() == marker  # untouched


def test_pacer_spaces_out_costly_instances(client, config, db):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.joined("1", "Ann", "10:00", email="ann@x.org")
    normalize_pending(db)
    readings = iter([0.0, 2.0, 5.0, 9.0, 9.5])  # a refresh that took 2 s, then later calls
    pacer = RefreshPacer(share=0.25, clock=lambda: next(readings))
    assert pacer.run(db, [MEETING_UUID]) == [MEETING_UUID]
    assert pacer.run(db, [MEETING_UUID]) == [] and pacer.pending == {MEETING_UUID}  # due again at 0 + 2 / 0.25
    assert pacer.run(db, []) == [MEETING_UUID] and not pacer.pending


def test_migration_from_the_previous_schema_keeps_all_data(tmp_path):

    db = open_db(str(tmp_path / "old.db"))
    migrations.apply(db, stop_before="m008_derived_attendance")
    assert "attendance" not in db.table_names()
    sc = Scenario(None, None, meeting_id=MEETING, uuid=MEETING_UUID)
    recorder = Recorder(sc)
    meeting_webhooks(recorder)
    for i, event in enumerate(recorder.events):
        store_delivery(db, json.dumps(event).encode(), timestamp=str(1_714_557_600 + i), signature="v0=test")
    normalize_pending(db)
    old_tables = [t for t in db.table_names() if t != "_sqlite_migrations"]
    before = {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}]"))) for t in old_tables}
    assert before["raw_records"] and before["participant_events"]

    migrate(db)
    after = {t: sorted(map(repr, db.execute(f"SELECT * FROM [{t}]"))) for t in old_tables}
    assert after == before
    assert set(DERIVED) <= set(db.table_names()) and {"attendees", "registrant_attendance"} <= set(db.view_names())
    refresh_instances(db, [MEETING_UUID])
    people = dict(db.execute("SELECT person_key, attended_seconds FROM attendance").fetchall())
    assert people["email:ann@x.org"] == 55 * 60 and people["email:eve@x.org"] == 60 * 60
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.close()


def test_report_rows_of_an_incomplete_fetch_are_not_used(client, config, db):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID)
    sc.started("10:00")
    sc.joined("1", "Ann", "10:00", email="ann@x.org")
    sc.left("1", "Ann", "10:50", email="ann@x.org")
    sc.ended("11:00")
    fetch = start_fetch(db, MEETING_UUID, kind="meeting", meeting_id=MEETING)
    row = report_row("1", "Ann", sc.t("10:00"), sc.t("10:10"), user_email="ann@x.org")
    save_report_page(db, fetch, MEETING_UUID, RawPage("test://page", b"{}"), [participant_to_row(row)])
    (ann,) = cli(config, "attendance", MEETING)["attendees"]
    assert (ann["attended_seconds"], ann["sources"]) == (50 * 60, ["webhook"])  # still running: webhooks only


def test_pacer_leaves_what_exceeds_its_budget_for_the_next_run(client, config, db):
    for uuid in ("a==", "b==", "c=="):
        Scenario(client, config, meeting_id=MEETING, uuid=uuid).joined("1", "Ann", "10:00", email="ann@x.org")
    normalize_pending(db)
    assert derived.dirty_instances(db) == ["a==", "b==", "c=="]
    readings = iter([0.0, 3.0, 3.0, 6.0, 6.0, 100.0, 100.0, 101.0])  # each refresh "takes" 3 s
    pacer = RefreshPacer(budget=5.0, clock=lambda: next(readings))
    assert pacer.run(db, []) == ["a==", "b=="]  # c would start past the 5 s budget
    assert derived.dirty_instances(db) == ["c=="] and pacer.pending == {"c=="}
    assert pacer.run(db, []) == ["c=="] and derived.dirty_instances(db) == []
