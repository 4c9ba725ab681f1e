"""Ingest throughput and latency: the Procfile `web` process against a bare Flask endpoint.

Both run the Procfile's own gunicorn command line (same workers, same worker class; only
the app differs) on 127.0.0.1. wrk drives them in alternating rounds with signed, distinct
`webinar.participant_joined` bodies; the ratio is the median of the rounds' ratios. Then
an open-loop generator sends a steady rate to each and reports p50/p99. lost = 2xx
answered minus rows stored, which must be 0. Figures also give the server's CPU time per
request (master, workers), steadier than requests/s on a shared machine. Ours answers from
its spool and imports into raw_records up to a second later: each of its rounds lasts until
that import is done, so the import's CPU counts against it and never runs during a bare round.

    python bench/bench_ingest.py                 # 5 rounds of 5 s each, then 10 s at 500 req/s
    python bench/bench_ingest.py --rounds 9 --seconds 8
"""

from __future__ import annotations

import argparse
import shlex
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402
from bench.harness import BARE_APP, OUR_APP, Server, WrkResult  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternated wrk rounds per server (default 5)")
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk round (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--rate", type=float, default=500, help="steady rate for p50/p99, req/s (default 500)")
    parser.add_argument("--rate-seconds", type=float, default=10, help="length of the steady run (default 10)")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY for both servers (default: the Procfile's)")
    parser.add_argument("--max-rps", type=float, default=12000, help="distinct bodies are prepared for this rate")
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 20 and 1 <= args.seconds <= 60 and 1 <= args.rate_seconds <= 60):
        parser.error("keep it bounded: 1-20 rounds of 1-60 s, a steady run of 1-60 s")
    if not 1 <= args.rate <= 5000:
        parser.error("--rate must be between 1 and 5000")
    return args


def prepare_requests(directory: Path, run: str, args: argparse.Namespace) -> None:
    """Per-thread files of distinct signed bodies, enough for `--max-rps` over a round."""
    per_thread = int(args.max_rps * args.seconds / args.threads) + 1000
    directory.mkdir(parents=True, exist_ok=True)
    for t in range(args.threads):
        bodies = (
            harness.participant_event("webinar.participant_joined", run=f"{run}t{t}", n=n) for n in range(per_thread)
        )
        harness.write_wrk_requests(directory / f"requests-{t + 1}.txt", bodies)


def wrk_round(
    server: Server, directory: Path, args: argparse.Namespace, seconds: float, *, database: Path | None = None
) -> tuple[WrkResult, float]:
    """One wrk round against `server`: its result and the server's CPU seconds per request.

    With `database`, the round lasts until the server has imported what it spooled: that
    work is counted in its CPU per request and never overlaps the other server's round.
    """
    pids = harness.process_tree(server.process.pid)
    before = harness.cpu_seconds(pids)
    result = harness.run_wrk(
        server.port, directory, threads=args.threads, connections=args.connections, seconds=seconds
    )
    if database is not None:
        harness.wait_for_import(database)
    cpu = harness.cpu_seconds(pids) - before
    return result, cpu / result.requests if result.requests else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    print("$ python bench/bench_ingest.py " + " ".join(shlex.quote(a) for a in shown))
    print(f"machine: {harness.machine_description()}")
    with harness.temp_dir("bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        database = tmp_path / "ingest.db"
        env = harness.bench_env(database, workers=args.workers)
        ours_port, bare_port = harness.free_port(), harness.free_port()
        ours_cmd = harness.web_command(ours_port, app=OUR_APP)
        bare_cmd = harness.web_command(bare_port, app=BARE_APP)
        print(f"ours: {ours_cmd}")
        print(f"bare: {bare_cmd}")
        print(
            f"load: wrk -t{args.threads} -c{args.connections} -d{args.seconds:g}s, a distinct signed body per request"
        )
        with (
            harness.running("ours", ours_cmd, ours_port, env, tmp_path) as ours,
            harness.running("bare", bare_cmd, bare_port, env, tmp_path) as bare,
        ):
            lost = throughput(ours, bare, database, tmp_path, args)
            lost += steady(ours, bare, database, args)
    return 0 if lost == 0 else 1


def throughput(ours: Server, bare: Server, database: Path, tmp: Path, args: argparse.Namespace) -> int:
    """Alternated wrk rounds; prints each and the medians; returns events lost."""
    run = uuid.uuid4().hex[:8]
    bare_dir = tmp / "bare-requests"
    prepare_requests(bare_dir, f"{run}bare", args)
    warm_dir = tmp / "warm-requests"
    prepare_requests(warm_dir, f"{run}warm", args)
    # Warm both (imports, first connections, SQLite's page cache) before measuring.
    wrk_round(ours, warm_dir, args, seconds=2, database=database)
    wrk_round(bare, bare_dir, args, seconds=2)

    ratios, ours_rps, bare_rps, ours_cpu, bare_cpu = [], [], [], [], []
    answered = stored = failures = wrapped = 0
    print()
    print(
        "round  bare req/s  ours req/s  ratio  bare p99 ms  ours p99 ms  bare CPU/req  ours CPU/req  ours 2xx  stored"
    )
    for r in range(args.rounds):
        round_dir = tmp / f"round-{r}"
        prepare_requests(round_dir, f"{run}r{r}", args)
        before = harness.wait_for_stable_count(database)
        results = {}
        for name in ("bare", "ours") if r % 2 == 0 else ("ours", "bare"):
            if name == "bare":
                results[name] = wrk_round(bare, bare_dir, args, args.seconds)
            else:
                results[name] = wrk_round(ours, round_dir, args, args.seconds, database=database)
        after = harness.wait_for_stable_count(database)
        (mine, mine_cpu), (base, base_cpu) = results["ours"], results["bare"]
        answered += mine.ok
        stored += after - before
        failures += mine.failed + mine.socket_errors
        wrapped += mine.wrapped
        ratios.append(mine.rps / base.rps if base.rps else 0.0)
        ours_rps.append(mine.rps)
        bare_rps.append(base.rps)
        ours_cpu.append(mine_cpu)
        bare_cpu.append(base_cpu)
        print(
            f"{r + 1:>5}  {base.rps:>10,.0f}  {mine.rps:>10,.0f}  {ratios[-1]:>5.2f}  {base.p99_ms:>11.1f}  "
            f"{mine.p99_ms:>11.1f}  {base_cpu * 1e6:>9.0f} us  {mine_cpu * 1e6:>9.0f} us  {mine.ok:>8,}  {after - before:>6,}"
        )
        for path in round_dir.iterdir():
            path.unlink()

    lost = max(0, answered - stored)
    median = harness.median
    print()
    print(
        f"bare Flask endpoint: median {median(bare_rps):,.0f} req/s, {median(bare_cpu) * 1e6:.0f} us server CPU/request"
    )
    print(
        f"Procfile web:        median {median(ours_rps):,.0f} req/s, {median(ours_cpu) * 1e6:.0f} us server CPU/request"
    )
    print(f"ratio ours/bare: median {median(ratios):.2f} of rounds [{', '.join(f'{x:.2f}' for x in ratios)}]")
    print(f"CPU ratio bare/ours: {median(bare_cpu) / median(ours_cpu):.2f} (ours includes importing its spool)")
    print(
        f"wrk rounds: 2xx answered {answered:,}, rows stored {stored:,}, lost {lost}, non-2xx or socket errors {failures}"
    )
    if wrapped:
        print(f"WARNING: wrk ran out of distinct bodies {wrapped} times (duplicates measured); raise --max-rps")
    return lost


def steady(ours: Server, bare: Server, database: Path, args: argparse.Namespace) -> int:
    """p50/p99 at a steady rate (open loop, a new connection per request); returns events lost."""
    count = int(args.rate * args.rate_seconds)
    run = uuid.uuid4().hex[:8]
    print()
    print(
        f"steady {args.rate:g} req/s for {args.rate_seconds:g} s: {count:,} requests each, open loop, new connections"
    )
    print("server  p50 ms  p99 ms  max ms     2xx  failed  lost  generator lag ms")
    lost = 0
    for server in (ours, bare):
        bodies = [
            harness.participant_event("webinar.participant_left", run=f"{run}{server.name}", n=n) for n in range(count)
        ]
        result = harness.run_schedule(server.port, harness.constant_rate_plan(bodies, args.rate))
        shown = "-"
        if server is ours:
            harness.wait_for_stable_count(database)
            lost = harness.missing_bodies(database, result.ok_bodies)
            shown = str(lost)
        print(
            f"{server.name:<6}  {result.percentile(50):>6.1f}  {result.percentile(99):>6.1f}  "
            f"{max(result.latencies_ms, default=float('nan')):>6.1f}  {len(result.ok_bodies):>6,}  {result.failed:>6}  "
            f"{shown:>4}  {result.max_lateness_ms:>6.1f}"
        )
        if result.errors or any(status >= 300 for status in result.statuses):
            print(f"        statuses {result.statuses}, errors {result.errors}")
    return lost


if __name__ == "__main__":
    sys.exit(harness.timed(main))
