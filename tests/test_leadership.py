"""Leadership of the workers (issue 19): of several workers on one database, one runs the
scheduled jobs; when it dies another takes over within the retry interval."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import integrations.jobs.leadership as leadership_module
from integrations.jobs.leadership import LEADER_STATE, Leadership, leader_only
from store.db import DatabaseUnavailable, open_db
from store.events import get_state
from store.migrations import migrate
from tests.conftest import API_TOKEN
from tests.fault_support import Proc, start_worker

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
TAKE_OVER_BOUND = 60  # seconds: the "within a minute"


def leadership(location: str, identity: str) -> Leadership:
    return Leadership(open_db(location), identity=identity, now=lambda: T0)


@pytest.fixture
def sqlite_location(tmp_path) -> Iterator[str]:
    location = str(tmp_path / "attendance.db")
    db = open_db(location)
    migrate(db)
    db.close()
    yield location


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_one_leads_and_the_other_takes_over_once_it_lets_go(store, request):
    location = request.getfixturevalue("sqlite_location" if store == "sqlite" else "pg_url")
    if store == "postgresql":
        db = open_db(location)
        migrate(db)
        db.close()
    first, second = leadership(location, "host-a:1"), leadership(location, "host-b:2")
    try:
        assert first.check() and first.leading
        assert not second.check() and not second.leading
        assert first.check()  # still leads: its lock is still held
        assert get_state(first.db, LEADER_STATE) == "host-a:1 since 2024-05-01T10:00:00Z"
        first.release()
        assert second.check() and second.leading
        assert not first.check()
        assert get_state(second.db, LEADER_STATE) == "host-b:2 since 2024-05-01T10:00:00Z"
    finally:
        for one in (first, second):
            one.release()
            one.db.close()


def test_a_job_runs_only_while_its_worker_leads(sqlite_location):
    runs: list[str] = []
    first, second = leadership(sqlite_location, "a:1"), leadership(sqlite_location, "b:2")
    try:
        first.check()
        second.check()
        leader_only(lambda: runs.append("a"), first)()
        leader_only(lambda: runs.append("b"), second)()
        assert runs == ["a"]
    finally:
        for one in (first, second):
            one.release()
            one.db.close()


def test_a_leader_whose_session_the_server_ends_stops_leading(pg_url):
    db = open_db(pg_url)
    migrate(db)
    first, second = leadership(pg_url, "a:1"), leadership(pg_url, "b:2")
    try:
        assert first.check()
        # What a failover or an administrator does: end the leader's session.
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
            ["attendance-worker leader lock"],
        )
        assert second.check()  # the lock went with the session
        assert not first.check() and not first.leading
    finally:
        for one in (first, second):
            one.release()
            one.db.close()
        db.close()


def wait_until(condition, what: str, procs: list[Proc], bound: float = 45) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {bound}s: {what}\n" + "\n---\n".join(p.log()[-2000:] for p in procs))
        time.sleep(0.05)


def _state_names(db, pid: int) -> bool:
    """The `worker_leader` state is "host:pid since TIME" for this pid."""
    return (get_state(db, LEADER_STATE) or "").split(" since")[0].endswith(f":{pid}")


def test_two_workers_on_postgresql_one_leads_and_the_other_takes_over_after_kill_9(pg_url, tmp_path):
    db = open_db(pg_url)
    migrate(db)  # once, so the two workers do not wait on each other's migration
    procs = [start_worker(pg_url, tmp_path, "a"), start_worker(pg_url, tmp_path, "b")]
    try:
        wait_until(
            lambda: all("leads the scheduled jobs" in p.log() or "stands by" in p.log() for p in procs),
            "both workers decided",
            procs,
        )
        leaders = [p for p in procs if "leads the scheduled jobs" in p.log()]
        assert len(leaders) == 1, [p.log()[-2000:] for p in procs]
        leader = leaders[0]
        follower = next(p for p in procs if p is not leader)
        assert "stands by" in follower.log() and "leads" not in follower.log()
        # The state row is written right after the log line: wait for it, bounded.
        wait_until(lambda: _state_names(db, leader.pid), "the state names the leader", procs)
        leader.kill9()
        wait_until(
            lambda: "leads the scheduled jobs" in follower.log(),
            "the follower takes over",
            procs,
            bound=TAKE_OVER_BOUND,
        )
        wait_until(lambda: _state_names(db, follower.pid), "the state names the new leader", procs)
        assert "Traceback" not in follower.log()
    finally:
        for p in procs:
            p.stop()
        db.close()


def test_healthz_names_the_leader(client, config):
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert client.get("/healthz", headers=auth).get_json()["worker_leader"] is None
    leader = leadership(config.database_path, "worker-host:4123")
    try:
        assert leader.check()
        assert (
            client.get("/healthz", headers=auth).get_json()["worker_leader"]
            == "worker-host:4123 since 2024-05-01T10:00:00Z"
        )
    finally:
        leader.release()
        leader.db.close()


def test_a_leader_whose_record_was_refused_writes_it_at_its_next_check(sqlite_location, monkeypatch):
    leader = leadership(sqlite_location, "host-a:1")
    refusals = [DatabaseUnavailable("server restarting")]
    real = leadership_module.durable_write

    def refuse_once(db, **kwargs):
        if refusals:
            raise refusals.pop()
        return real(db, **kwargs)

    monkeypatch.setattr(leadership_module, "durable_write", refuse_once)
    try:
        assert leader.check()
        assert get_state(leader.db, LEADER_STATE) is None  # refused: /healthz would be stale
        assert leader.check()
        assert get_state(leader.db, LEADER_STATE) == "host-a:1 since 2024-05-01T10:00:00Z"
    finally:
        leader.release()
        leader.db.close()
