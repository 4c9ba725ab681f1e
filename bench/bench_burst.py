"""The first minutes of a big webinar: 18,000 joins in 2 minutes, then drops, rejoins and leaves.

The deliveries come from the simulator's webinar (integrations/simulator/zoom_api.py: rejoins,
second devices; integrations/simulator/webhooks.py: what Zoom sends for it). Joins are
sent over `--duration` seconds, the rest of the webinar (drops, rejoins, leaves) over
`--tail` seconds, each request at its planned time on a new connection (open loop), to the
Procfile `web` process with the Procfile `worker` normalizing alongside, as deployed.
Prints p50/p99, errors and lost = 2xx answered but not stored (must be 0).

    python bench/bench_burst.py                      # 18,000 attendees, 120 s + 120 s
    python bench/bench_burst.py --scale 0.1 --duration 20 --tail 10
"""

from __future__ import annotations

import argparse
import shlex
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402
from integrations.demo.webinar import send_plan  # noqa: E402
from integrations.simulator.webhooks import instance_deliveries  # noqa: E402
from integrations.simulator.zoom_api import synthetic_webinar  # noqa: E402

ATTENDEES = 18_000
WEBINAR_ID = "95551230000"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 18,000 attendees (default 1)")
    parser.add_argument("--duration", type=float, default=120, help="seconds over which the joins arrive (default 120)")
    parser.add_argument("--tail", type=float, default=120, help="seconds for the rest of the webinar (default 120)")
    parser.add_argument("--no-worker", action="store_true", help="do not run the Procfile worker alongside")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    if not (0 < args.scale <= 2 and 1 <= args.duration <= 600 and 1 <= args.tail <= 600):
        parser.error("keep it bounded: --scale in (0, 2], --duration and --tail 1-600 s")
    return args


def normalized_up_to(database: Path) -> tuple[int, int]:
    """(normalize cursor, last raw record id)."""
    conn = sqlite3.connect(database, timeout=30)
    try:
        cursor = conn.execute("SELECT value FROM state WHERE key = 'normalize_cursor'").fetchone()
        last = conn.execute("SELECT max(id) FROM raw_records").fetchone()[0] or 0
    finally:
        conn.close()
    return int(cursor[0]) if cursor else 0, last


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    print("$ python bench/bench_burst.py " + " ".join(shlex.quote(a) for a in shown))
    print(f"machine: {harness.machine_description()}")
    attendees = max(1, int(ATTENDEES * args.scale))
    dataset = synthetic_webinar(attendees, seed=args.seed, webinar_id=WEBINAR_ID, absentees=0)
    [instance] = dataset.instances[WEBINAR_ID]
    deliveries = instance_deliveries(dataset, WEBINAR_ID, instance["uuid"], lost=0.0, seed=args.seed)
    # The earliest `attendees` joins (nearly all first joins) over --duration; the rest over --tail.
    planned = send_plan(deliveries, burst_joins=attendees, join_seconds=args.duration, rest_seconds=args.tail)
    plan = [(offset, d.body) for offset, d in planned]
    peak, peak_at = harness.peak_rate(plan)
    joins = sum(1 for d in deliveries if d.event.endswith("participant_joined"))
    print(
        f"webinar: {attendees:,} attendees, {joins:,} joins (rejoins and second devices included), {len(plan):,} "
        f"deliveries: the first {attendees:,} joins over {args.duration:g} s, the rest of the webinar over {args.tail:g} s"
    )
    with harness.temp_dir("bench-burst-") as tmp:
        tmp_path = Path(tmp)
        database = tmp_path / "burst.db"
        env = harness.bench_env(database)
        port = harness.free_port()
        command = harness.web_command(port)
        print(f"web: {command}")
        with harness.running("web", command, port, env, tmp_path) as web:
            worker = None
            if not args.no_worker:
                worker_line = harness.procfile_line("worker")
                print(f"worker: {worker_line}")
                worker = harness.start_process("worker", worker_line, env, tmp_path)
            try:
                # A server that has been up: threads started, connections open (not measured).
                warm = [harness.participant_event("webinar.participant_joined", run="warm", n=n) for n in range(300)]
                harness.run_schedule(web.port, harness.constant_rate_plan(warm, 300))
                result = harness.run_schedule(web.port, plan, progress=_progress)
                sent_by = time.monotonic()
                stored = harness.wait_for_stable_count(database)
                lost = harness.missing_bodies(database, result.ok_bodies)
                caught_up = _wait_for_normalization(database, bound=120) if worker else None
                caught_up_after = time.monotonic() - sent_by if caught_up else None
            finally:
                if worker is not None:
                    worker.stop()
    print()
    print(
        f"sent {result.sent:,} in {result.seconds:.1f} s; 2xx {len(result.ok_bodies):,}; rows stored {stored:,} (300 of them warm-up)"
    )
    print(
        f"latency from planned send: p50 {result.percentile(50):.1f} ms, p99 {result.percentile(99):.1f} ms, "
        f"max {max(result.latencies_ms, default=float('nan')):.1f} ms (generator lag max {result.max_lateness_ms:.1f} ms)"
    )
    joins_p99 = result.percentile(99, until=args.duration)
    rest_p99 = result.percentile(99, since=args.duration)
    print(
        f"  p99 while the first joins arrive: {joins_p99:.1f} ms; during the rest (rejoins, leaves): {rest_p99:.1f} ms"
    )
    print(f"  peak planned rate: {peak:,} requests in the second from {peak_at} s (new connection each)")
    errors = result.failed
    print(f"errors: {errors} (statuses {dict(sorted(result.statuses.items()))}, transport {result.errors or 'none'})")
    print(f"lost (2xx answered, not stored): {lost}")
    if worker is not None:
        if caught_up_after is None:
            print("normalization: did not catch up within 120 s of the last request")
        else:
            print(f"normalization caught up {caught_up_after:.1f} s after the last request")
    return 0 if lost == 0 and errors == 0 else 1


def _progress(done: int, total: int, offset: float) -> None:
    print(f"  {offset:6.0f} s: {done:,}/{total:,} sent", flush=True)


def _wait_for_normalization(database: Path, *, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        cursor, last = normalized_up_to(database)
        if cursor >= last:
            return True
        time.sleep(0.5)
    return False


if __name__ == "__main__":
    sys.exit(harness.timed(main))
