"""Benchmark: attendance of a 20,000-person webinar from both sources (issue 4, "Performance").

Builds a database with one ended webinar: PEOPLE people over SEGMENTS connections, each
connection seen twice: as a webhook join/leave pair (participant_events, with its raw
record) and as a row of a complete report (stored through store/reports.py). Then times:

- the full refresh of the derived tables (compute + short write transactions);
- a refresh after one more webhook event (recompute, write only what changed);
- `python worker.py attendance WEBINAR --format json` and `summary` as the organizer runs
  them (fresh processes, wall time including Python start-up), with their peak memory.

Targets: attendance under 1 s, summary under 0.5 s on this machine.

    python bench/bench_attendance.py [--people 20000] [--segments 60000] [--runs 3] [--postgres]

`--postgres` runs it all against a throwaway PostgreSQL server (bench/stores.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stores import BenchStores, add_store_options, bench_stores  # noqa: E402
from integrations.config import load_config  # noqa: E402
from integrations.derived.refresh import refresh_instances  # noqa: E402
from integrations.web import create_app  # noqa: E402
from integrations.zoom.reports import participant_to_row  # noqa: E402
from store.db import Store, durable_write, open_db  # noqa: E402
from store.derived import RefreshStats  # noqa: E402
from store.events import upsert_instance  # noqa: E402
from store.evidence import GENESIS, RawPage, chain_hash, content_hash  # noqa: E402
from store.migrations import migrate  # noqa: E402
from store.postgres import redact  # noqa: E402
from store.reports import complete_fetch, save_registrants, save_report_page, start_fetch  # noqa: E402

WEBINAR = "91234567890"
UUID = "bench/Inst//ance+uuid=="
START = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)
MINUTES = 180
BENCH_TOKEN = "bench-api-token-of-at-least-32-characters"  # issue 14: 32 at least


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def store_instance_window(db: Store) -> None:
    """The benchmark webinar's instance row, started and ended as its events would say."""
    with durable_write(db) as c:
        for event, moment in (("started", START), ("ended", START + timedelta(minutes=MINUTES))):
            upsert_instance(
                c,
                {
                    "instance_uuid": UUID,
                    "meeting_id": WEBINAR,
                    "kind": "webinar",
                    "topic": "Bench webinar",
                    "event_ts": int(moment.timestamp() * 1000),
                    event: True,
                    "start_time": iso(START),
                    "end_time": iso(moment),
                },
            )


def make_people(people: int, segments: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """(connections, registrants): each connection has ids, a name and join/leave times."""
    connections: list[dict] = []
    registrants: list[dict] = []
    end = START + timedelta(minutes=MINUTES)
    for p in range(people):
        guest = rng.random() < 0.08
        name = f"Person {p}"
        email = "" if guest else f"person{p}@example.org"
        registrant_id = "" if guest else f"reg{p:06d}"
        puid = f"puid{p:06d}" if not guest and rng.random() < 0.6 else ""
        if registrant_id:
            registrants.append(
                {
                    "meeting_id": WEBINAR,
                    "registrant_id": registrant_id,
                    "email": email,
                    "first_name": "Person",
                    "last_name": str(p),
                    "name": name,
                    "status": "approved",
                    "create_time": iso(START - timedelta(days=3)),
                }
            )
        count = segments // people + (1 if p < segments % people else 0)
        joined = START + timedelta(seconds=rng.randint(-300, 1800))
        for c in range(count):
            begin = joined + timedelta(seconds=rng.randint(0, 3600) * c)
            finish = min(end + timedelta(seconds=60), begin + timedelta(seconds=rng.randint(600, 7200)))
            connections.append(
                {
                    "user_id": str(16778240 + len(connections)),
                    "name": name,
                    "email": email,
                    "registrant_id": registrant_id,
                    "participant_user_id": puid,
                    "participant_uuid": f"pu{len(connections)}",
                    "join": begin,
                    "leave": finish,
                }
            )
    for r in range(int(len(registrants) * 0.3)):  # registered, never came
        registrants.append(
            {
                "meeting_id": WEBINAR,
                "registrant_id": f"abs{r:06d}",
                "email": f"absent{r}@example.org",
                "first_name": "Absent",
                "last_name": str(r),
                "name": f"Absent {r}",
                "status": "approved",
                "create_time": iso(START - timedelta(days=3)),
            }
        )
    return connections, registrants


def webhook_body(event: str, conn: dict, ts: datetime) -> bytes:
    participant = {
        "user_id": conn["user_id"],
        "user_name": conn["name"],
        "email": conn["email"],
        "registrant_id": conn["registrant_id"],
        "participant_user_id": conn["participant_user_id"],
        "participant_uuid": conn["participant_uuid"],
    }
    participant["join_time" if event.endswith("joined") else "leave_time"] = iso(ts)
    obj = {"id": WEBINAR, "uuid": UUID, "topic": "Bench webinar", "host_id": "host", "participant": participant}
    return json.dumps(
        {"event": event, "event_ts": int(ts.timestamp() * 1000), "payload": {"account_id": "acct", "object": obj}}
    ).encode()


def store_webhooks(db, connections: list[dict]) -> int:
    """Raw records and their participant_events rows, in bulk (setup, not what is timed)."""
    raw, events = [], []
    previous = db.execute("SELECT chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    previous = previous[0] if previous else GENESIS
    next_id = (db.execute("SELECT max(id) FROM raw_records").fetchone()[0] or 0) + 1
    now = iso(datetime.now(UTC))
    for conn in connections:
        for event, ts in (("webinar.participant_joined", conn["join"]), ("webinar.participant_left", conn["leave"])):
            body = webhook_body(event, conn, ts)
            sha = content_hash(body)
            previous = chain_hash(previous, sha, now)
            raw.append((next_id, "webhook", now, body, sha, previous, event, WEBINAR, UUID))
            joined = event.endswith("joined")
            events.append(
                (
                    next_id,
                    event,
                    "webinar",
                    WEBINAR,
                    UUID,
                    conn["user_id"],
                    conn["participant_uuid"],
                    conn["participant_user_id"] or None,
                    conn["registrant_id"] or None,
                    conn["email"] or None,
                    conn["name"],
                    iso(ts) if joined else None,
                    None if joined else iso(ts),
                    int(ts.timestamp() * 1000),
                )
            )
            next_id += 1
    with durable_write(db) as c:
        c.executemany(
            "INSERT INTO raw_records (id, source, received_at, body, sha256, chain_hash, event, meeting_id, "
            "meeting_uuid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            raw,
        )
        c.executemany(
            "INSERT INTO participant_events (raw_id, event, kind, meeting_id, instance_uuid, user_id, "
            "participant_uuid, participant_user_id, registrant_id, email, user_name, join_time, leave_time, "
            "event_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        c.execute(
            "INSERT INTO state (key, value) VALUES ('normalize_cursor', ?) ON CONFLICT (key) DO UPDATE "
            "SET value = excluded.value",
            (str(next_id - 1),),
        )
    return len(events)


def store_report(db, connections: list[dict], registrants: list[dict]) -> int:
    """The report as the poller stores it: pages of 300 rows, then the registrants."""
    fetch_id = start_fetch(db, UUID, kind="webinar", meeting_id=WEBINAR)
    for i in range(0, len(connections), 300):
        page = [
            {
                "id": c["participant_user_id"],
                "user_id": c["user_id"],
                "name": c["name"],
                "user_email": c["email"],
                "registrant_id": c["registrant_id"],
                "participant_user_id": c["participant_user_id"],
                "join_time": iso(c["join"]),
                "leave_time": iso(c["leave"]),
                "duration": int((c["leave"] - c["join"]).total_seconds()),
                "status": "in_meeting",
            }
            for c in connections[i : i + 300]
        ]
        body = json.dumps({"participants": page}).encode()
        save_report_page(
            db, fetch_id, UUID, RawPage(f"bench://report/{i}", body), [participant_to_row(p) for p in page]
        )
    complete_fetch(db, fetch_id)
    save_registrants(db, RawPage("bench://registrants", json.dumps(registrants).encode()), registrants)
    return len(connections)


# Runs worker.py and reports the process's own peak memory (VmHWM of its address space:
# ru_maxrss of a child forked from this big process would count this process's pages).
WRAPPER = """
import atexit, runpy, sys
def peak():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            sys.stderr.write('VmHWM ' + line.split()[1] + '\\n')
atexit.register(peak)
sys.argv = ['worker.py', *sys.argv[1:]]
runpy.run_path('worker.py', run_name='__main__')
"""


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(wall seconds, peak memory in MiB, output bytes) of one `worker.py` command in a fresh process."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", WRAPPER, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE, timeout=300
        )
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.decode()}")
        peak_kb = int(proc.stderr.decode().rsplit("VmHWM ", 1)[1].split()[0])
        size = out.tell()
    return elapsed, peak_kb // 1024, size


REFRESH = """
import json, sys, time
sys.path.insert(0, '.')
from integrations.derived.refresh import refresh_instances
from store.db import open_db
from store.derived import RefreshStats
db = open_db(sys.argv[1], lock_timeout=30)
stats = RefreshStats()
started, cpu = time.perf_counter(), time.process_time()
refresh_instances(db, [sys.argv[2]], force=True, stats=stats)
wall, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps(dict(wall=wall, cpu=cpu, rows=stats.rows_written, tx=stats.transactions, longest=stats.longest_transaction, peak_kb=peak)))
"""


def refresh_in_child(path: str) -> str:
    """The first full refresh (compute and write every row), in a fresh process for its peak memory."""
    proc = subprocess.run(
        [sys.executable, "-c", REFRESH, path, UUID], cwd=ROOT, capture_output=True, text=True, timeout=600, check=True
    )
    r = json.loads(proc.stdout)
    return (
        f"full refresh (first computation): {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['rows']} rows in "
        f"{r['tx']} transactions, longest transaction {r['longest'] * 1000:.0f} ms, peak memory {r['peak_kb'] // 1024} MiB"
    )


def time_api(database_url: str, runs: int) -> list[float]:
    """Seconds per GET of the read API, in this process through the real app (no network)."""
    config = load_config({"DATABASE_URL": database_url, "API_TOKEN": BENCH_TOKEN}, dotenv=False)
    client = create_app(config).test_client()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(f"/api/meetings/{WEBINAR}/attendance", headers={"Authorization": f"Bearer {BENCH_TOKEN}"})
        response.get_data()
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.get_data(as_text=True)[:200]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=60_000, help="connections, each in webhooks and report")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", help="build the database at this path and keep it")
    add_store_options(parser)
    opts = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    if opts.keep and (opts.postgres or opts.database_url):
        parser.error("--keep is for SQLite")
    with bench_stores(opts, "bench-attendance-") as stores:
        print("store:", stores.kind)
        run(opts, opts.keep or stores.location("attendance.db"), stores)


def run(opts: argparse.Namespace, path: str, stores: BenchStores) -> None:
    """Build the database at `path` (a file or a PostgreSQL URL), then time the refresh and the reads."""
    db = open_db(path, lock_timeout=30)
    migrate(db)
    rng = random.Random(7)
    connections, registrants = make_people(opts.people, opts.segments, rng)
    t = time.perf_counter()
    store_instance_window(db)
    events = store_webhooks(db, connections)
    rows = store_report(db, connections, registrants)
    print(
        f"setup: {opts.people} people, {len(connections)} connections -> {events} webhook events + {rows} report rows, "
        f"{len(registrants)} registrants ({time.perf_counter() - t:.1f} s, not timed)"
    )

    db.close()
    print(refresh_in_child(path))
    db = open_db(path, lock_timeout=30)

    late = dict(
        connections[0],
        user_id="99999999",
        participant_uuid="late",
        join=START + timedelta(minutes=170),
        leave=START + timedelta(minutes=175),
    )
    store_webhooks(db, [late])
    stats = RefreshStats()
    t, cpu = time.perf_counter(), time.process_time()
    refresh_instances(db, [UUID], stats=stats)
    print(
        f"refresh after one more connection: {time.perf_counter() - t:.2f} s wall, {time.process_time() - cpu:.2f} s CPU, "
        f"{stats.rows_written} rows in {stats.transactions} transactions, "
        f"longest transaction {stats.longest_transaction * 1000:.1f} ms"
    )
    db.close()

    database_url = path if stores.server_url else f"sqlite:///{path}"
    env = {**os.environ, "DATABASE_URL": database_url}
    for args, target in (
        (["attendance", WEBINAR, "--format", "json"], 1.0),
        (["summary", WEBINAR, "--format", "json"], 0.5),
        (["attendance", WEBINAR, "--min-minutes", "60", "--format", "csv"], 1.0),
    ):
        runs = [run_cli(args, env) for _ in range(opts.runs)]
        wall = statistics.median(r[0] for r in runs)
        print(
            f"python worker.py {' '.join(args)}: median {wall:.3f} s of {opts.runs} "
            f"(min {min(r[0] for r in runs):.3f}, max {max(r[0] for r in runs):.3f}), peak memory {max(r[1] for r in runs)} MiB, "
            f"{runs[0][2] / 1e6:.1f} MB output; target < {target} s: {'ok' if wall < target else 'MISSED'}"
        )
    api = time_api(database_url, opts.runs)
    print(
        f"GET /api/meetings/{WEBINAR}/attendance (in process, real app): median {statistics.median(api):.3f} s of {opts.runs}"
    )
    db = open_db(path)
    print("database:", redact(path), f"({db.size_bytes() / 1e6:.0f} MB)")
    db.close()


if __name__ == "__main__":
    main()
