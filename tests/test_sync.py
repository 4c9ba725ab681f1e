"""Report sync and the scheduled poller over real HTTP against the simulator (issue 3)."""

from __future__ import annotations

import json
import math
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from apscheduler.schedulers.background import BackgroundScheduler

import integrations.reports.sync as sync_module
from integrations.config import ConfigError
from integrations.ingest.normalize import normalize_pending
from integrations.jobs.scheduler import add_jobs
from integrations.reports.plan import FetchPlan, parse_delays
from integrations.reports.sync import ReportPoller, poll_reports, sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from integrations.zoom.client import DailyLimitError, NotFound, ZoomUnavailable
from store.db import open_db
from store.migrations import migrate
from store.reports import report_rows, schedule_row, start_fetch, to_iso, track, update_schedule, worker_name
from tests.conftest import make_config, post_event
from tests.zoom_support import FakeClock, expected_rows, meeting_dataset, report_row, simulator_client, stored_rows

WEBINAR_ID = "91234567890"
UUID = "Bznyg8KZTdCVbQxvS/oZ7w=="
SLASHED_UUID = "//Xyz+AAAA/BB=="
DELAYS = "30m,2h,24h"


def counts(db) -> dict[str, int]:
    return {
        t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("raw_records", "report_rows", "registrants", "instances")
    }


@pytest.fixture
def webinar():
    return synthetic_webinar(700, seed=11, webinar_id=WEBINAR_ID, uuid=UUID)


@pytest.fixture
def sim(webinar):
    simulator = ZoomSimulator(webinar).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def zoom(sim):
    client = simulator_client(sim, FakeClock())
    yield client
    client.close()


# -- sync now ---------------------------------------------------------------------------------------


def test_sync_stores_every_row_of_a_multi_page_report_and_the_roster(db, sim, zoom, webinar):
    result = sync_meeting(db, zoom, WEBINAR_ID)
    rows = webinar.participants[UUID]
    pages = math.ceil(len(rows) / 300)
    assert len(rows) > 600 and pages >= 3
    assert result.kind == "webinar"
    [fetch] = result.fetches
    assert (fetch.status, fetch.pages, fetch.rows, fetch.new_rows, fetch.restarts) == (
        "complete",
        pages,
        len(rows),
        len(rows),
        0,
    )
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)
    instance = db.execute(
        "SELECT report_complete, report_fetch_id, report_fetched_at, kind FROM instances WHERE instance_uuid = ?",
        [UUID],
    ).fetchone()
    assert instance[:2] == (1, fetch.fetch_id) and instance[2] and instance[3] == "webinar"
    registrants = {
        r["registrant_id"]: (r["email"], r["status"])
        for r in db.query("SELECT * FROM registrants WHERE meeting_id = ?", [WEBINAR_ID])
    }
    assert registrants == {r["id"]: (r["email"], r["status"]) for r in webinar.registrants[WEBINAR_ID]}
    assert {"approved", "pending", "denied"} <= {status for _, status in registrants.values()}
    # Counted by rowcount: rows other areas' triggers write on insert are not "new registrants".
    assert (result.registrants.registrants, result.registrants.new) == (len(registrants), len(registrants))
    roster_pages = sum(max(1, math.ceil(n / 300)) for n in result.registrants.by_status.values())
    # Kind unknown: past_meetings answers 404 first, then past_webinars lists the instance.
    # Then the webinar's poll definitions and the instance's poll report (issue 16).
    assert sim.calls == {
        "token": 1,
        "instances": 2,
        "participants": pages,
        "registrants": roster_pages,
        "poll_definitions": 1,
        "polls": 1,
    }
    assert zoom.api_calls == 2 + pages + roster_pages + 2


def test_each_page_is_stored_byte_for_byte_as_evidence(db, sim, zoom, webinar):
    sync_meeting(db, zoom, WEBINAR_ID, registrants=False)
    pages = db.execute(
        "SELECT url, body, meeting_uuid FROM raw_records WHERE source = 'report' AND url LIKE '%/participants%' ORDER BY id"
    ).fetchall()
    assert all(uuid == UUID for _, _, uuid in pages)
    served = [p for body in (json.loads(b) for _, b, _ in pages) for p in body["participants"]]
    assert served == webinar.participants[UUID]
    assert all("page_size=300" in url for url, _, _ in pages)


def test_second_sync_adds_nothing(db, sim, zoom):
    sync_meeting(db, zoom, WEBINAR_ID)
    before = counts(db)
    again = sync_meeting(db, zoom, WEBINAR_ID)
    assert counts(db) == before
    assert [f.new_rows for f in again.fetches] == [0]
    assert again.registrants.new == 0


def test_expired_page_token_restarts_and_stores_each_row_once(db, sim, zoom, webinar):
    sim.add_fault("participants", "expired_page_token", page=3)
    [fetch] = sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False).fetches
    pages = math.ceil(len(webinar.participants[UUID]) / 300)
    assert (fetch.restarts, fetch.rows, fetch.new_rows) == (
        1,
        len(webinar.participants[UUID]),
        len(webinar.participants[UUID]),
    )
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)
    # Two pages, a refused third, then the whole listing again.
    assert sim.calls["participants"] == 2 + 1 + pages


def test_sync_rides_out_429_500_timeout_and_expired_token(db, webinar):
    with ZoomSimulator(webinar) as sim:
        clock = FakeClock()
        client = simulator_client(sim, clock, timeout=1.5)
        sim.add_fault("participants", "rate_limit", page=1, retry_after="3")
        sim.add_fault("participants", "server_error", page=2)
        sim.add_fault("participants", "slow", page=3, delay=5)
        sim.add_fault("participants", "expired_token", page=3)
        [fetch] = sync_meeting(db, client, WEBINAR_ID, kind="webinar", registrants=False).fetches
        pages = math.ceil(len(webinar.participants[UUID]) / 300)
        assert fetch.status == "complete" and fetch.rows == len(webinar.participants[UUID])
        assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)
        # instances, pages, one extra call per fault, the polls and the poll report (issue 16)
        assert client.api_calls == 1 + pages + 4 + 2
        assert sim.calls["token"] == 2
        assert 3 in clock.sleeps


def test_daily_limit_mid_report_leaves_the_instance_incomplete_until_a_later_sync(db, sim, zoom, webinar):
    sim.add_fault("participants", "daily_limit", page=2)
    with pytest.raises(DailyLimitError):
        sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    assert sim.calls["participants"] == 2
    fetch = db.execute("SELECT status, pages, error FROM report_fetches").fetchone()
    assert fetch[0] == "failed" and fetch[1] == 1 and "DailyLimitError" in fetch[2]
    assert db.execute(
        "SELECT report_complete, report_fetch_id FROM instances WHERE instance_uuid = ?", [UUID]
    ).fetchone() == (0, None)
    assert report_rows(db, UUID) == []
    [fetch] = sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False).fetches
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)
    assert fetch.new_rows == len(webinar.participants[UUID]) - 300  # page 1 was kept from the first try


def test_a_failed_refetch_keeps_the_last_complete_report(db, sim, zoom, webinar):
    sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    first = report_rows(db, UUID)
    changed = synthetic_webinar(700, seed=12, webinar_id=WEBINAR_ID, uuid=UUID)
    sim.load(changed)
    sim.add_fault("participants", "server_error", page=2, times=10)
    with pytest.raises(ZoomUnavailable):
        sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    assert report_rows(db, UUID) == first
    sim.faults.clear()
    sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    assert stored_rows(report_rows(db, UUID)) == expected_rows(changed, UUID)


def test_refetch_replaces_rows_zoom_had_not_processed(db):
    unprocessed = meeting_dataset(UUID, 40)
    for row in unprocessed.participants[UUID]:
        row["duration"], row["leave_time"] = 0, row["join_time"]
    with ZoomSimulator(unprocessed) as sim:
        client = simulator_client(sim, FakeClock())
        [early] = sync_meeting(db, client, "81234567890", instance_uuid=UUID, kind="meeting").fetches
        assert early.zero_duration_rows == 40
        sim.load(meeting_dataset(UUID, 40))
        [late] = sync_meeting(db, client, "81234567890", instance_uuid=UUID, kind="meeting").fetches
    assert (late.zero_duration_rows, late.rows, late.new_rows) == (0, 40, 40)
    assert stored_rows(report_rows(db, UUID)) == expected_rows(meeting_dataset(UUID, 40), UUID)
    assert db.execute("SELECT count(*) FROM report_rows").fetchone()[0] == 80  # the early rows stay as history


def test_one_instance_with_a_uuid_that_needs_double_encoding(db):
    dataset = meeting_dataset(SLASHED_UUID, 301)
    with ZoomSimulator(dataset) as sim:
        client = simulator_client(sim, FakeClock())
        [fetch] = sync_meeting(db, client, "81234567890", instance_uuid=SLASHED_UUID, kind="meeting").fetches
        # The poll report's path carries the doubly encoded UUID too (issue 16).
        assert sim.calls == {"token": 1, "participants": 2, "poll_definitions": 1, "polls": 1}
    assert fetch.rows == 301
    assert stored_rows(report_rows(db, SLASHED_UUID)) == expected_rows(dataset, SLASHED_UUID)


def test_unknown_meeting_is_not_found_after_asking_both_kinds(db, sim, zoom):
    with pytest.raises(NotFound, match="no meeting or webinar 999"):
        sync_meeting(db, zoom, "999")
    assert sim.calls["instances"] == 2
    assert db.execute("SELECT count(*) FROM report_fetches").fetchone()[0] == 0


def test_an_instance_too_old_is_reported_while_the_others_are_fetched(db):
    dataset = meeting_dataset(UUID, 10)
    dataset.add_instance("81234567890", "oldInstance==", "2025-01-01T09:00:00Z", [report_row(1)])
    dataset.too_old.add("oldInstance==")
    with ZoomSimulator(dataset) as sim:
        client = simulator_client(sim, FakeClock())
        result = sync_meeting(db, client, "81234567890", kind="meeting")
    assert [f.instance_uuid for f in result.fetches] == [UUID]
    assert [(uuid, type(e).__name__) for uuid, e in result.failures] == [("oldInstance==", "ReportTooOld")]


def test_a_complete_fetch_refreshes_the_derived_tables(db, sim, zoom, monkeypatch):
    refreshed = []
    monkeypatch.setattr(sync_module, "refresh_instances", lambda db, uuids: refreshed.append(list(uuids)))
    sim.add_fault("participants", "server_error", page=1, times=10)
    with pytest.raises(ZoomUnavailable):
        sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    assert refreshed == []  # a failed fetch changes nothing derived
    sim.faults.clear()
    sync_meeting(db, zoom, WEBINAR_ID, kind="webinar", registrants=False)
    assert refreshed == [[UUID]]


# -- planning (pure) ----------------------------------------------------------------------------------

END = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)


def test_parse_delays():
    assert parse_delays("30m, 2h,24h") == (timedelta(minutes=30), timedelta(hours=2), timedelta(hours=24))
    assert parse_delays("90s,1d") == (timedelta(seconds=90), timedelta(days=1))
    for bad in ("", "30", "2h,30m", "5x"):
        with pytest.raises(ValueError):
            parse_delays(bad)


def test_first_fetch_collapses_stages_already_past():
    plan = FetchPlan(END, parse_delays(DELAYS))
    assert plan.first(END) == {"stage": 0, "due_at": to_iso(END + timedelta(minutes=30))}
    late = END + timedelta(hours=3)
    assert plan.first(late) == {"stage": 1, "due_at": to_iso(late)}


def test_after_complete_moves_to_the_next_stage_then_extra_fetches_then_done():
    plan = FetchPlan(END, parse_delays(DELAYS))
    nxt = plan.after_complete(END + timedelta(minutes=31), unprocessed_rows=0, extra_fetches=0)
    assert (nxt["stage"], nxt["due_at"], nxt["status"]) == (1, to_iso(END + timedelta(hours=2)), "pending")
    last = END + timedelta(hours=24, minutes=1)
    assert plan.after_complete(last, unprocessed_rows=0, extra_fetches=0)["status"] == "done"
    extra = plan.after_complete(last, unprocessed_rows=3, extra_fetches=0)
    assert (extra["due_at"], extra["extra_fetches"]) == (to_iso(last + timedelta(hours=24)), 1)
    assert plan.after_complete(last, unprocessed_rows=3, extra_fetches=2)["status"] == "done"


def test_after_failure_rules():
    after_failure = FetchPlan(END, parse_delays(DELAYS)).after_failure
    now = END + timedelta(minutes=31)
    common = {"stage": 0, "now": now, "error": "x"}
    assert after_failure("transient", attempts=0, **common)["due_at"] == to_iso(now + timedelta(minutes=5))
    assert after_failure("transient", attempts=2, **common)["due_at"] == to_iso(now + timedelta(minutes=20))
    assert after_failure("transient", attempts=7, **common)["status"] == "gave_up"
    assert after_failure("rate_limited", attempts=0, retry_at=END + timedelta(days=1), **common)["due_at"] == to_iso(
        END + timedelta(days=1)
    )
    assert after_failure("not_found", attempts=0, **common)["due_at"] == to_iso(END + timedelta(hours=2))
    assert after_failure("too_old", attempts=0, **common)["status"] == "gave_up"
    auth = after_failure("auth", attempts=0, **common)
    assert (auth["due_at"], "attempts" in auth) == (to_iso(now + timedelta(minutes=15)), False)


# -- the scheduled poller -----------------------------------------------------------------------------


def webinar_ended(end: datetime, *, uuid: str = UUID, ts: int = 1) -> dict:
    start = end - timedelta(minutes=90)
    return {
        "event": "webinar.ended",
        "event_ts": int(end.timestamp() * 1000) + ts,
        "payload": {
            "account_id": "acc",
            "object": {
                "id": WEBINAR_ID,
                "uuid": uuid,
                "host_id": "host",
                "topic": "All-hands",
                "type": 5,
                "start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "duration": 90,
                "timezone": "UTC",
            },
        },
    }


class Now:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def poll(db, client, now: Now, at: datetime):
    now.moment = at
    return poll_reports(db, client, report_delays=DELAYS, now=now)


def test_worker_fetches_at_each_delay_after_the_end_and_never_twice(client, db, sim, zoom, webinar):
    post_event(client, webinar_ended(END))
    normalize_pending(db)  # the webinar is now tracked and its instance known to have ended
    now = Now(END)
    pages = math.ceil(len(webinar.participants[UUID]) / 300)

    assert [len(poll(db, zoom, now, END + timedelta(minutes=m)).fetched) for m in (10, 29)] == [0, 0]
    assert sim.calls["participants"] == 0
    assert schedule_row(db, UUID)["due_at"] == to_iso(END + timedelta(minutes=30))

    assert len(poll(db, zoom, now, END + timedelta(minutes=31)).fetched) == 1
    assert sim.calls["participants"] == pages and sim.calls["registrants"] >= 3
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)
    assert len(poll(db, zoom, now, END + timedelta(minutes=32)).fetched) == 0
    # A restarted worker (new poller, new client) finds nothing due either.
    restarted = simulator_client(sim, FakeClock())
    assert len(poll(db, restarted, now, END + timedelta(minutes=33)).fetched) == 0
    assert sim.calls["participants"] == pages

    for at, expected in (
        (timedelta(hours=2, minutes=1), 2),
        (timedelta(hours=24, minutes=1), 3),
        (timedelta(hours=60), 3),
    ):
        poll(db, restarted, now, END + at)
        assert sim.calls["participants"] == pages * expected
    row = schedule_row(db, UUID)
    assert (row["status"], row["due_at"], row["stage"]) == ("done", None, 2)
    assert db.execute("SELECT count(*) FROM report_fetches WHERE status = 'complete'").fetchone()[0] == 3
    # A meeting that sends webhooks has its instance list read every 6 hours only (to catch a
    # lost `ended`): at +10 min, +24 h and +60 h.
    assert sim.calls["instances"] == 3


def test_zero_durations_after_the_last_delay_earn_bounded_extra_fetches(client, db):
    dataset = meeting_dataset(UUID, 12, meeting_id=WEBINAR_ID, kind="webinar")
    for row in dataset.participants[UUID]:
        row["duration"] = 0
    with ZoomSimulator(dataset) as sim:
        zoom = simulator_client(sim, FakeClock())
        post_event(client, webinar_ended(END))
        normalize_pending(db)
        now = Now(END)
        for hours in (0.6, 2.1, 24.1, 48.2, 72.3, 96.4, 200):
            poll(db, zoom, now, END + timedelta(hours=hours))
        assert sim.calls["participants"] == 3 + 2  # three delays, then two extra fetches
        row = schedule_row(db, UUID)
        assert (row["status"], row["extra_fetches"]) == ("done", 2)
        assert db.execute("SELECT DISTINCT zero_duration_rows FROM report_fetches").fetchall() == [(12,)]


# A fixed day, away from midnight: the test once failed in the five minutes before 00:00 UTC
# (issue 14). The clock ticks on from there, so signatures and tokens stay consistent.
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # the day of zoom_support.T0, after it


@pytest.fixture
def at_noon():
    with time_machine.travel(NOON, tick=True):
        yield


def test_daily_limit_pauses_all_polling_until_the_next_utc_day(client, db, sim, zoom, webinar, at_noon):
    real_now = datetime.now(UTC)
    # At noon (at_noon): five minutes later is still the same UTC day.
    end = real_now - timedelta(minutes=40)
    post_event(client, webinar_ended(end))
    normalize_pending(db)
    sim.add_fault("participants", "daily_limit")
    now = Now(real_now)
    result = poll(db, zoom, now, real_now)
    midnight = (real_now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    assert result.paused_until == midnight and "DailyLimitError" in result.error
    assert schedule_row(db, UUID)["due_at"] == to_iso(midnight)
    calls = dict(sim.calls)
    assert poll(db, zoom, now, real_now + timedelta(minutes=5)).paused_until == midnight
    assert poll(db, simulator_client(sim, FakeClock()), now, midnight - timedelta(seconds=1)).fetched == []
    assert dict(sim.calls) == calls  # not one call while paused, token endpoint included
    assert len(poll(db, zoom, now, midnight + timedelta(seconds=1)).fetched) == 1
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)


def test_a_fetch_left_by_a_dead_worker_is_resumed(client, db, sim, zoom, webinar):
    post_event(client, webinar_ended(END))
    normalize_pending(db)
    now = Now(END)
    poll(db, zoom, now, END + timedelta(minutes=1))
    # A worker claimed the fetch, started it and died (its pid is gone).
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = worker_name().rsplit(":", 1)[0]
    update_schedule(db, UUID, claimed_by=f"{host}:{dead.pid}", claimed_until=to_iso(END + timedelta(hours=5)))
    start_fetch(db, UUID, kind="webinar", meeting_id=WEBINAR_ID)
    assert len(poll(db, zoom, now, END + timedelta(minutes=31)).fetched) == 1
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)


def test_a_fetch_claimed_by_a_live_worker_is_left_alone(client, db, sim, zoom):
    post_event(client, webinar_ended(END))
    normalize_pending(db)
    now = Now(END)
    poll(db, zoom, now, END + timedelta(minutes=1))
    update_schedule(db, UUID, claimed_by="another-host:1", claimed_until=to_iso(END + timedelta(hours=1)))
    assert poll(db, zoom, now, END + timedelta(minutes=31)).fetched == []
    assert sim.calls["participants"] == 0
    assert len(poll(db, zoom, now, END + timedelta(hours=1, minutes=1)).fetched) == 1  # the claim ran out


def test_unknown_report_moves_to_the_next_stage_and_too_old_gives_up(client, db, sim, zoom):
    post_event(client, webinar_ended(END))
    post_event(client, webinar_ended(END, uuid="oldInstance==", ts=2))
    normalize_pending(db)
    sim.dataset.add_instance(WEBINAR_ID, "oldInstance==", "2025-01-01T09:00:00Z", [report_row(1)])
    sim.dataset.too_old.add("oldInstance==")
    sim.add_fault("participants", "not_found", page=1)
    now = Now(END)
    poll(db, zoom, now, END + timedelta(minutes=31))
    rows = {uuid: schedule_row(db, uuid) for uuid in (UUID, "oldInstance==")}
    statuses = {uuid: (r["status"], r["stage"]) for uuid, r in rows.items()}
    assert statuses == {UUID: ("pending", 1), "oldInstance==": ("gave_up", 0)}
    assert "ReportTooOld" in rows["oldInstance=="]["last_error"]


def test_tracked_meeting_without_webhooks_is_discovered_and_scheduled(db, at_noon):
    real_now = datetime.now(UTC)
    dataset = meeting_dataset(UUID, 20, start=(real_now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    dataset.add_instance("81234567890", "ancient==", "2024-01-01T09:00:00Z", [report_row(1)])
    with ZoomSimulator(dataset) as sim:
        zoom = simulator_client(sim, FakeClock())
        track(db, "81234567890", kind="meeting")
        now = Now(real_now)
        result = poll(db, zoom, now, real_now)
        assert result.discovered == 1  # the instance from before tracking began is left to `sync`
        assert schedule_row(db, "ancient==") is None
        assert schedule_row(db, UUID)["due_at"] == to_iso(real_now + timedelta(minutes=30))
        poll(db, zoom, now, real_now + timedelta(minutes=20))
        assert sim.calls["instances"] == 1  # read again only after an hour
        poll(db, zoom, now, real_now + timedelta(minutes=61))
        assert sim.calls["instances"] == 2
        assert stored_rows(report_rows(db, UUID)) == expected_rows(dataset, UUID)


def test_report_poller_job_plans_without_credentials_and_rejects_bad_delays(client, db, tmp_path, caplog):
    config = make_config(tmp_path)
    post_event(client, webinar_ended(END))
    normalize_pending(db)
    result = ReportPoller(config)()
    assert result.planned == 1 and result.fetched == []
    assert "report polling off until credentials are set" in caplog.text
    with pytest.raises(ConfigError, match="REPORT_FETCH_DELAYS"):  # the configuration refuses them first
        make_config(tmp_path, REPORT_FETCH_DELAYS="2h,30m")


def test_worker_schedules_the_report_poll_job(tmp_path, sim):
    config = make_config(tmp_path, **sim.environ())
    database = open_db(config.database_path)
    migrate(database)  # as run_scheduler does before starting the jobs
    database.close()
    scheduler = BackgroundScheduler(timezone="UTC")
    add_jobs(scheduler, config)
    job = scheduler.get_job("report_poll")
    assert job is not None and job.max_instances == 1
    assert isinstance(job.func, ReportPoller)
    assert job.func() is None  # not running yet: no run starts
    scheduler.start(paused=True)
    try:
        result = job.func()  # one run, as the running scheduler would make it
    finally:
        scheduler.shutdown()
    assert job.func() is None  # shut down: no new run either
    assert result.error is None and result.paused_until is None


def test_a_stopping_worker_leaves_the_fetch_due_and_the_next_run_resumes_it(client, db, sim, zoom, webinar):
    post_event(client, webinar_ended(END))
    normalize_pending(db)
    now = Now(END + timedelta(minutes=31))
    # SIGTERM arrives while the first page is being stored.
    result = poll_reports(db, zoom, report_delays=DELAYS, now=now, stopping=lambda: sim.calls["participants"] >= 1)
    assert "SyncInterrupted" in result.error and result.fetched == []
    assert sim.calls["participants"] == 1
    row = schedule_row(db, UUID)
    assert (row["status"], row["due_at"], row["claimed_by"], row["attempts"]) == (
        "pending",
        to_iso(now.moment),
        None,
        0,
    )
    assert db.execute("SELECT status, pages FROM report_fetches").fetchall() == [("failed", 1)]
    assert report_rows(db, UUID) == []
    assert len(poll_reports(db, zoom, report_delays=DELAYS, now=now).fetched) == 1
    assert stored_rows(report_rows(db, UUID)) == expected_rows(webinar, UUID)


def test_a_stopping_worker_cuts_a_long_retry_wait_short(client, db, tmp_path, sim):
    post_event(client, webinar_ended(datetime.now(UTC) - timedelta(hours=1)))
    normalize_pending(db)
    sim.add_fault("participants", "rate_limit", retry_after="120")
    config = make_config(tmp_path, **sim.environ(), ZOOM_REQUESTS_PER_SECOND="0")
    stop = threading.Event()
    poller = ReportPoller(config, stopping=stop.is_set)
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    result = poller()
    assert time.monotonic() - started < 5
    assert "SyncInterrupted" in result.error and "waiting left" in result.error
    assert schedule_row(db, UUID)["status"] == "pending"
    assert poller() is None  # a stopped worker starts no new run


def test_refused_credentials_pause_the_poller_instead_of_asking_every_minute(client, db, tmp_path, sim, caplog):
    post_event(client, webinar_ended(datetime.now(UTC) - timedelta(hours=1)))
    normalize_pending(db)
    config = make_config(tmp_path, **(sim.environ() | {"ZOOM_CLIENT_SECRET": "wrong"}))
    poller = ReportPoller(config)
    first = poller()
    assert first.auth_failed and "ZoomAuthError" in first.error
    assert poller().error is None  # the next minute: planning only, Zoom not asked
    assert sim.calls == {"token": 1}
    assert "Zoom API calls paused for 15 minutes" in caplog.text


def test_an_unexpected_error_on_one_instance_does_not_stop_the_others(
    client, db, sim, zoom, webinar, monkeypatch, caplog
):
    post_event(client, webinar_ended(END))
    post_event(client, webinar_ended(END, uuid="other==", ts=2))
    normalize_pending(db)
    sim.dataset.add_instance(WEBINAR_ID, "other==", "2026-03-02T09:30:00Z", [report_row(i) for i in range(3)])
    real = sync_module.participant_to_row

    def poisoned(participant):
        if participant["user_id"] == webinar.participants[UUID][0]["user_id"]:
            raise RuntimeError("unforeseen")
        return real(participant)

    monkeypatch.setattr(sync_module, "participant_to_row", poisoned)
    result = poll(db, zoom, Now(END), END + timedelta(minutes=31))
    assert [f.instance_uuid for f in result.fetched] == ["other=="]
    row = schedule_row(db, UUID)
    assert (row["status"], row["attempts"], row["claimed_by"]) == ("pending", 1, None)
    assert "RuntimeError: unforeseen" in row["last_error"] and "failed unexpectedly" in caplog.text


# -- sync leaves the derived tables as rebuild makes them (issue 14) -------------------------------


def derived_tables(db) -> dict[str, list[tuple]]:
    """Every derived row, without the columns that say when it was computed."""
    from store.derived import TABLES

    tables = {}
    for table in (*TABLES, "attendance_instances"):
        cursor = db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        names = [d[0] for d in cursor.description]
        keep = [i for i, n in enumerate(names) if n not in ("computed_at", "refreshed_at", "as_of")]
        tables[table] = [tuple(row[i] for i in keep) for row in cursor.fetchall()]
    return tables


def test_sync_without_a_worker_leaves_what_rebuild_makes(client, db, zoom, webinar):
    from integrations.derived.rebuild import rebuild_attendance

    # Webhooks first, as during the webinar: the derived rows exist before the roster does.
    post_event(client, webinar_ended(END))
    normalize_pending(db)
    sync_meeting(db, zoom, WEBINAR_ID)
    after_sync = derived_tables(db)
    assert any(row for row in after_sync["attendance"])
    matched = db.execute("SELECT count(*) FROM attendance WHERE registrant_matched").fetchone()[0]
    assert matched > 0  # the roster reached the derived rows
    rebuild_attendance(db, None)
    assert derived_tables(db) == after_sync
