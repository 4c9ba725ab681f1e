"""Build a large database of raw records fast (executemany, chain computed as the service does).

Shared by bench_export.py and bench_verify.py. Mostly webinar join/leave deliveries shaped
like Zoom's examples (about 700 bytes each), with one report page of 300 participant rows
every `report_every` records, as a sync of a large webinar stores them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from store.db import open_db  # noqa: E402
from store.evidence import GENESIS, chain_hash, content_hash  # noqa: E402
from store.migrations import migrate  # noqa: E402

MEETING_ID = "81234567890"
INSTANCES = ("4444AAAiAAAAAiAiAiiAii==", "5555BBBjBBBBBjBjBjjBjj==", "6666CCC/CCCCCkCkCkkCkk==")


def webhook_body(n: int, instance: str, when: datetime) -> bytes:
    """A compact `webinar.participant_joined`/`left` body for participant `n`."""
    joined = n % 2 == 0
    at = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    participant = {
        "user_id": str(16778240 + n),
        "user_name": f"Attendee {n // 2} =cmd|' /C calc'!A0" if n % 997 == 0 else f"Attendee {n // 2}",
        "id": f"iFxeBPYun6SAiWUz{n:08d}",
        "participant_uuid": f"55555AAAiAAAAAiAi{n:08d}",
        "participant_user_id": "",
        "email": f"attendee{n // 2}@example.com",
        "registrant_id": f"reg-{n // 2:09d}",
        "customer_key": "",
        "phone_number": "",
        ("join_time" if joined else "leave_time"): at,
    }
    if not joined:
        participant["leave_reason"] = "left the webinar.<br>Reason: left the meeting"
    event = {
        "event": "webinar.participant_joined" if joined else "webinar.participant_left",
        "event_ts": int(when.timestamp() * 1000),
        "payload": {
            "account_id": "AAAAAABBBB",
            "object": {
                "id": MEETING_ID,
                "uuid": instance,
                "host_id": "x1yCzABCDEfg23HiJKl4mN",
                "topic": "Record attempt webinar",
                "type": 5,
                "start_time": "2024-05-01T15:00:00Z",
                "duration": 120,
                "timezone": "America/Los_Angeles",
                "participant": participant,
            },
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def report_page(n: int, rows: int, when: datetime) -> bytes:
    """A participant report page of `rows` rows, as Zoom returns it."""
    participants = [
        {
            "id": "",
            "user_id": str(33554432 + n * rows + i),
            "name": f"Reported {n}-{i}",
            "user_email": f"reported{n}-{i}@example.com",
            "registrant_id": f"reg-{(n * rows + i) % 500000:09d}",
            "participant_user_id": "",
            "join_time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "leave_time": (when + timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration": 5400,
            "failover": False,
            "status": "in_meeting",
            "customer_key": "",
            "bo_mtg_id": "",
        }
        for i in range(rows)
    ]
    page = {
        "page_count": 60,
        "page_size": rows,
        "total_records": 60 * rows,
        "next_page_token": f"tok{n}",
        "participants": participants,
    }
    return json.dumps(page, separators=(",", ":")).encode()


def build_raw_database(
    path: str, records: int, *, report_every: int = 1000, page_rows: int = 300, batch: int = 20000
) -> dict:
    """Create `path` with `records` chained raw records; returns counts and seconds taken."""
    started = time.monotonic()
    db = open_db(path)
    migrate(db)
    db.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    start = datetime(2024, 5, 1, 15, 0, tzinfo=UTC)
    previous = GENESIS
    pages = 0
    conn.execute(
        "INSERT OR IGNORE INTO instances (instance_uuid, meeting_id, kind) VALUES "
        + ",".join(f"('{u}', '{MEETING_ID}', 'webinar')" for u in INSTANCES)
    )
    for first in range(1, records + 1, batch):
        rows = []
        for record_id in range(first, min(first + batch, records + 1)):
            when = start + timedelta(microseconds=record_id * 7919)
            received_at = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            instance = INSTANCES[record_id % len(INSTANCES)]
            if report_every and record_id % report_every == 0:
                body, source, url = (
                    report_page(pages, page_rows, when),
                    "report",
                    f"https://api.zoom.us/v2/report/webinars/{instance}/participants",
                )
                meeting_uuid, event, meeting_id = instance, None, None
                pages += 1
            else:
                body, source, url = webhook_body(record_id, instance, when), "webhook", None
                meeting_uuid = instance
                event = "webinar.participant_joined" if record_id % 2 == 0 else "webinar.participant_left"
                meeting_id = MEETING_ID
            sha = content_hash(body)
            previous = chain_hash(previous, sha, received_at)
            rows.append((record_id, source, received_at, body, sha, previous, url, event, meeting_id, meeting_uuid))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO raw_records (id, source, received_at, body, sha256, chain_hash, url, event, meeting_id, meeting_uuid) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        conn.execute("COMMIT")
    # Everything is normalized as far as exports are concerned (no pending deliveries).
    conn.execute(
        "INSERT INTO state (key, value) VALUES ('normalize_cursor', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(records),),
    )
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return {
        "records": records,
        "report_pages": pages,
        "webhooks": records - pages,
        "seconds": time.monotonic() - started,
    }


def _tree_sample(pid: int) -> tuple[int, dict[int, int]]:
    """(resident memory in KB, {pid: CPU clock ticks used}) of `pid` and all its descendants (Linux /proc)."""
    rss, ticks, stack = 0, {}, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/status") as f:
                rss += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
            with open(f"/proc/{current}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[current] = int(fields[11]) + int(fields[12])  # utime + stime of this process only
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    stack.extend(int(child) for child in f.read().split())
        except (FileNotFoundError, ProcessLookupError, StopIteration, IndexError, ValueError):
            continue
    return rss, ticks


def run_measured(command: list[str], *, stdout=None) -> tuple[float, float, float, int]:
    """Run `command`; returns (wall seconds, CPU seconds of it and its descendants, peak summed RSS
    in MB of its process tree, exit code). Both are sampled every 20 ms, so CPU counts every
    process of the tree (forkserver workers too, which are no child of the command) but the
    last 20 ms of each."""
    peak = 0
    cpu_ticks: dict[int, int] = {}
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=stdout, cwd=str(ROOT))
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            rss, ticks = _tree_sample(process.pid)
            peak = max(peak, rss)
            for pid, used in ticks.items():
                cpu_ticks[pid] = max(used, cpu_ticks.get(pid, 0))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    process.wait()
    done.set()
    sampler.join()
    seconds = time.monotonic() - started
    return seconds, sum(cpu_ticks.values()) / os.sysconf("SC_CLK_TCK"), peak / 1024, process.returncode


def database_for_bench(path: str | None, records: int, report_every: int, keep_dir: str) -> tuple[str, dict | None]:
    """The database to measure: `path` if it exists (reused as is), else one built in `keep_dir`."""
    if path and os.path.exists(path):
        return path, None
    target = path or os.path.join(keep_dir, f"raw-{records}.db")
    return target, build_raw_database(target, records, report_every=report_every)


def database_arguments(description: str, keep_help: str) -> argparse.ArgumentParser:
    """A command line parser with the options every raw-database benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--report-every", type=int, default=1000, help="one report page per N records (0: none)")
    parser.add_argument("--db", help="database to use; built here if it does not exist")
    parser.add_argument("--keep", action="store_true", help=keep_help)
    return parser


def parse_database_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The parsed arguments, with --records checked (1 to 5,000,000)."""
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 5_000_000:
        parser.error("--records must be 1 to 5,000,000")
    return args


@contextlib.contextmanager
def bench_workdir(args, prefix: str) -> Iterator[tuple[str, str]]:
    """A temporary directory and the database to measure (args.db, or one built there); the
    directory is removed afterwards unless args.keep."""
    workdir = tempfile.mkdtemp(prefix=prefix)
    try:
        db, built = database_for_bench(args.db, args.records, args.report_every, workdir)
        if built:
            print(
                f"built {db}: {built['records']:,} records ({built['report_pages']:,} report pages) in {built['seconds']:.1f}s"
            )
        yield workdir, db
        print("figures vary with other load on this 2-core machine: compare only within one run")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def print_command(command: list[str]) -> None:
    """The measured command, as a line to paste into a shell."""
    print(f"       command: (cd {ROOT} && {shlex.join(command)})")
