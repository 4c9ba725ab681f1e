"""Issue 19's "done when": two web processes and two workers share one PostgreSQL; a webinar
delivered through both web processes, with one of them killed mid-way and the leading worker
killed, gives exactly the attendance, funnel and verify results the same webinar gives on
SQLite with one web process and one worker."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrations.config import database_path_from_url
from integrations.jobs.leadership import LEADER_STATE
from integrations.simulator.webhooks import instance_deliveries
from integrations.simulator.zoom_api import ZoomSimulator
from store.db import open_db
from store.events import get_state
from store.migrations import migrate
from tests.fault_support import ROOT, Proc, bounded, post_signed, process_env, start_web, start_worker
from tests.funnel_support import MIN_MINUTES, PASS_PERCENT, UUID, WEBINAR, scenario

pytestmark = pytest.mark.slow


def cli(url: str, tmp_path: Path, *args: str, extra: dict[str, str] | None = None) -> str:
    """Run `worker.py ARGS` on `url`; its standard output (a failure shows its error)."""
    env = process_env(tmp_path / "unused.db", DATABASE_URL=url, **(extra or {}))
    result = subprocess.run(
        [sys.executable, "worker.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"worker.py {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


def deliver(body: bytes, targets: list[Proc]) -> None:
    """POST as Zoom does: a delivery not answered 2xx is sent again (here to the other replica)."""
    for _ in range(20):
        for web in targets:
            if web.process.poll() is not None:
                continue
            try:
                if 200 <= post_signed(web.port, body, timeout=10)[0] < 300:
                    return
            except (OSError, http.client.HTTPException):
                pass
        time.sleep(0.2)
    raise AssertionError("no web process stored the delivery")


def wait_for(condition, seconds: float, what: str, procs: list[Proc]) -> None:
    """Poll `condition` until it holds; fail after `seconds` with the processes' logs."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {seconds}s: {what}\n" + "\n---\n".join(p.log()[-2000:] for p in procs))
        time.sleep(0.05)


def _leader(db, workers: list[Proc]) -> Proc | None:
    """The worker that the `worker_leader` state names, if any."""
    leader = (get_state(db, LEADER_STATE) or "").split(" since")[0]
    return next((w for w in workers if leader.endswith(f":{w.pid}")), None)


def play(url: str, tmp_path: Path, *, replicas: int) -> dict[str, object]:
    """The same webinar into the store at `url`, through `replicas` web processes and workers."""
    sc = scenario(people=80, seed=19)
    deliveries = [d.body for d in instance_deliveries(sc.dataset, WEBINAR, UUID, lost=0.0)]
    db = open_db(database_path_from_url(url))
    migrate(db)  # once, before the processes start together
    webs = [start_web(tmp_path / "unused.db", DATABASE_URL=url) for _ in range(replicas)]
    workers = [start_worker(url, tmp_path, f"w{n}") for n in range(replicas)]
    killed: list[str] = []
    try:
        wait_for(lambda: _leader(db, workers) is not None, 60, "a worker leads", workers)
        with bounded(180, "the webinar delivered"):
            for n, body in enumerate(deliveries):
                if replicas > 1 and n == len(deliveries) // 2:
                    webs[0].kill9()  # a web host dies mid-way; the load balancer sends the rest on
                    killed.append("web")
                if replicas > 1 and n == 2 * len(deliveries) // 3:
                    doomed = _leader(db, workers)
                    assert doomed is not None
                    doomed.kill9()  # the leading worker dies; the other takes over
                    killed.append("worker")
                # Round robin over the replicas that are up, as a load balancer does.
                up = [w for w in webs if w.process.poll() is None]
                deliver(body, up[n % len(up) :] + up[: n % len(up)])
        if replicas > 1:
            survivor = next(w for w in workers if w.process.poll() is None)
            wait_for(lambda: "leads the scheduled jobs" in survivor.log(), 60, "the other worker takes over", workers)
            killed.append("leader taken over")
        csv = tmp_path / "registrations.csv"
        csv.write_bytes(sc.csv)
        with ZoomSimulator(sc.dataset) as sim:
            cli(url, tmp_path, "sync", WEBINAR, "--instance", UUID, "--kind", "webinar", extra=sim.environ())
        cli(url, tmp_path, "import-registrations", WEBINAR, str(csv))
        cli(url, tmp_path, "rules", WEBINAR, "--min-minutes", str(MIN_MINUTES), "--pass-percent", str(PASS_PERCENT))
        webhooks = db.execute("SELECT count(*) FROM raw_records WHERE source = 'webhook'").fetchone()[0]
        return {
            "killed": killed,
            "webhooks": webhooks,
            "delivered": len(deliveries),
            "attendance": json.loads(cli(url, tmp_path, "attendance", WEBINAR, "--format", "json")),
            "summary": json.loads(cli(url, tmp_path, "summary", WEBINAR, "--format", "json")),
            "funnel": json.loads(cli(url, tmp_path, "funnel", WEBINAR, "--format", "json")),
            "verify": cli(url, tmp_path, "verify"),
        }
    finally:
        for proc in webs + workers:
            proc.stop()
        db.close()


def test_replicas_on_postgresql_give_what_one_machine_on_sqlite_gives(tmp_path, pg_url):
    os.makedirs(tmp_path / "sqlite")
    os.makedirs(tmp_path / "pg")
    on_sqlite = play(f"sqlite:///{tmp_path / 'sqlite' / 'attendance.db'}", tmp_path / "sqlite", replicas=1)
    on_pg = play(pg_url, tmp_path / "pg", replicas=2)
    assert on_pg["killed"] == ["web", "worker", "leader taken over"]
    # Every delivery stored once on both (a retried one is deduplicated by its body).
    assert on_sqlite["webhooks"] == on_pg["webhooks"] == on_sqlite["delivered"]
    assert on_sqlite["attendance"]["attendees"], "an empty answer would agree trivially"
    for output in ("attendance", "summary", "funnel"):
        assert _without_clock(on_pg[output]) == _without_clock(on_sqlite[output]), output
    verified = [on_sqlite["verify"], on_pg["verify"]]
    # The same records chained on both; the heads differ because each run received them at
    # its own times (received_at is in every link).
    counts = [re.fullmatch(r"OK (\d+) records, head \w+ \(record \d+\)\n", str(out)) for out in verified]
    assert all(counts), verified
    # The webhooks, then the report sync's pages and the imported CSV, on both.
    assert int(counts[0][1]) == int(counts[1][1]) > on_sqlite["delivered"]


# When each run computed or set something: the wall clock of that run, not data.
CLOCK_FIELDS = {"as_of", "computed_at", "set_at"}


def _without_clock(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_clock(v) for k, v in value.items() if k not in CLOCK_FIELDS}
    if isinstance(value, list):
        return [_without_clock(v) for v in value]
    return value
