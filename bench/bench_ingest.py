"""Ingest throughput and latency: the Procfile `web` process against a bare Flask endpoint.

Both run the Procfile's own gunicorn command line (same workers, same worker class; only
the app differs) on 127.0.0.1. wrk drives them in alternating rounds with signed, distinct
`webinar.participant_joined` bodies; the ratio is the median of the rounds' ratios. Then
an open-loop generator sends a steady rate to each and reports p50/p99. lost = 2xx
answered minus rows stored, which must be 0. Figures also give the server's CPU time per
request (master, workers), steadier than requests/s on a shared machine. Ours answers from
its spool and imports into raw_records up to a second later: each of its rounds lasts until
that import is done, so the import's CPU counts against it and never runs during a bare round.

With --postgres both store in a throwaway PostgreSQL server started for the run (issue 19:
ours commits each batch into webhook_intake, then chains it into raw_records), and with
--web-processes 2 each app runs as two gunicorn masters on two ports, the load split
between them (two wrk processes, the steady requests taking turns), as behind a balancer.

    python bench/bench_ingest.py                 # 5 rounds of 5 s each, then 10 s at 500 req/s
    python bench/bench_ingest.py --rounds 9 --seconds 8
    python bench/bench_ingest.py --postgres --web-processes 2
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import shutil
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import harness  # noqa: E402
from bench.harness import BARE_APP, OUR_APP, Server, WrkResult  # noqa: E402
from tests.pg_support import PgServer  # noqa: E402


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
    parser.add_argument(
        "--postgres", action="store_true", help="store in a throwaway PostgreSQL server instead of SQLite (issue 19)"
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=1,
        choices=[1, 2],
        help="gunicorn masters per app, each on its own port, load split between them (default 1)",
    )
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 20 and 1 <= args.seconds <= 60 and 1 <= args.rate_seconds <= 60):
        parser.error("keep it bounded: 1-20 rounds of 1-60 s, a steady run of 1-60 s")
    if not 1 <= args.rate <= 5000:
        parser.error("--rate must be between 1 and 5000")
    return args


def prepare_requests(directory: Path, run: str, args: argparse.Namespace) -> None:
    """Per-thread files of distinct signed bodies, enough for `--max-rps` over a round: one
    directory per web process (`p1`, `p2`), each for its own wrk."""
    per_thread = int(args.max_rps * args.seconds / args.threads) + 1000
    for p in range(args.web_processes):
        part = directory / f"p{p + 1}"
        part.mkdir(parents=True, exist_ok=True)
        for t in range(_split(args)[0]):
            bodies = (
                harness.participant_event("webinar.participant_joined", run=f"{run}p{p}t{t}", n=n)
                for n in range(per_thread)
            )
            harness.write_wrk_requests(part / f"requests-{t + 1}.txt", bodies)


def _split(args: argparse.Namespace) -> tuple[int, int]:
    """wrk threads and connections per web process (the totals split between them)."""
    n = args.web_processes
    return max(1, args.threads // n), max(1, args.connections // n)


def wrk_round(
    servers: list[Server], directory: Path, args: argparse.Namespace, seconds: float, *, database: str | None = None
) -> tuple[WrkResult, float]:
    """One wrk round against `servers` (one wrk each, at once): the summed result and the
    servers' CPU seconds per request.

    With `database`, the round lasts until the servers have moved what they acknowledged
    into raw_records: that work is counted in their CPU per request and never overlaps the
    other app's round. On PostgreSQL the database server's CPU counts too (SQLite's work is
    inside the web processes).
    """
    pids = [pid for server in servers for pid in harness.process_tree(server.process.pid)]
    if database is not None and POSTMASTER:
        pids += harness.process_tree(POSTMASTER[0])
    before = harness.cpu_seconds(pids)
    threads, connections = _split(args)
    with ThreadPoolExecutor(len(servers)) as pool:
        parts = list(
            pool.map(
                lambda pair: harness.run_wrk(
                    pair[0].port,
                    directory / f"p{pair[1] + 1}",
                    threads=threads,
                    connections=connections,
                    seconds=seconds,
                ),
                [(server, i) for i, server in enumerate(servers)],
            )
        )
    result = WrkResult(
        requests=sum(r.requests for r in parts),
        seconds=max(r.seconds for r in parts),
        ok=sum(r.ok for r in parts),
        duplicate=sum(r.duplicate for r in parts),
        failed=sum(r.failed for r in parts),
        socket_errors=sum(r.socket_errors for r in parts),
        wrapped=sum(r.wrapped for r in parts),
        p99_ms=max(r.p99_ms for r in parts),
    )
    if database is not None:
        harness.wait_for_import(database)
    cpu = harness.cpu_seconds(pids) - before
    return result, cpu / result.requests if result.requests else float("nan")


POSTMASTER: list[int] = []  # the PostgreSQL server's pid, when the bench started one


@contextlib.contextmanager
def bench_database(args: argparse.Namespace, tmp: Path) -> Iterator[str]:
    """Where both apps store: a SQLite file in `tmp`, or a database of a PostgreSQL server
    started for this run (Debian's postgresql, 127.0.0.1, fsync and synchronous commit on)."""
    if not args.postgres:
        yield str(tmp / "ingest.db")
        return
    server = PgServer()
    try:
        with open(Path(server.data) / "postmaster.pid") as f:
            POSTMASTER.append(int(f.readline()))
        print(f"database: PostgreSQL ({server.bin}) on 127.0.0.1:{server.port}, fsync=on, synchronous_commit=on")
        yield server.create_database()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shown = sys.argv[1:] if argv is None else argv
    print("$ python bench/bench_ingest.py " + " ".join(shlex.quote(a) for a in shown))
    print(f"machine: {harness.machine_description()}")
    with harness.temp_dir("bench-ingest-") as tmp, bench_database(args, Path(tmp)) as database:
        tmp_path = Path(tmp)
        env = harness.bench_env(database, workers=args.workers)
        ours_ports = [harness.free_port() for _ in range(args.web_processes)]
        bare_ports = [harness.free_port() for _ in range(args.web_processes)]
        print(f"ours: {harness.web_command(ours_ports[0], app=OUR_APP)}")
        print(f"bare: {harness.web_command(bare_ports[0], app=BARE_APP)}")
        if args.web_processes > 1:
            print(f"      each twice, on ports {ours_ports} (ours) and {bare_ports} (bare)")
        threads, connections = _split(args)
        print(
            f"load: {args.web_processes} x wrk -t{threads} -c{connections} -d{args.seconds:g}s, "
            "a distinct signed body per request"
        )
        with contextlib.ExitStack() as stack:
            ours = [
                stack.enter_context(
                    harness.running(f"ours{i + 1}", harness.web_command(port, app=OUR_APP), port, env, tmp_path)
                )
                for i, port in enumerate(ours_ports)
            ]
            bare = [
                stack.enter_context(
                    harness.running(f"bare{i + 1}", harness.web_command(port, app=BARE_APP), port, env, tmp_path)
                )
                for i, port in enumerate(bare_ports)
            ]
            lost = throughput(ours, bare, database, tmp_path, args)
            lost += steady(ours, bare, database, args)
    return 0 if lost == 0 else 1


def throughput(ours: list[Server], bare: list[Server], database: str, tmp: Path, args: argparse.Namespace) -> int:
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
        shutil.rmtree(round_dir)

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
    also = "chaining its intake and the PostgreSQL server" if args.postgres else "importing its spool"
    print(f"CPU ratio bare/ours: {median(bare_cpu) / median(ours_cpu):.2f} (ours includes {also})")
    print(
        f"wrk rounds: 2xx answered {answered:,}, rows stored {stored:,}, lost {lost}, non-2xx or socket errors {failures}"
    )
    if wrapped:
        print(f"WARNING: wrk ran out of distinct bodies {wrapped} times (duplicates measured); raise --max-rps")
    return lost


def steady(ours: list[Server], bare: list[Server], database: str, args: argparse.Namespace) -> int:
    """p50/p99 at a steady rate (open loop, a new connection per request); returns events lost."""
    count = int(args.rate * args.rate_seconds)
    run = uuid.uuid4().hex[:8]
    print()
    print(
        f"steady {args.rate:g} req/s for {args.rate_seconds:g} s: {count:,} requests each, open loop, new connections"
    )
    print("server  p50 ms  p99 ms  max ms     2xx  failed  lost  generator lag ms")
    lost = 0
    for name, servers in (("ours", ours), ("bare", bare)):
        bodies = [harness.participant_event("webinar.participant_left", run=f"{run}{name}", n=n) for n in range(count)]
        plan = harness.constant_rate_plan(bodies, args.rate)
        result = harness.run_schedule([server.port for server in servers], plan)
        shown = "-"
        if servers is ours:
            harness.wait_for_stable_count(database)
            lost = harness.missing_bodies(database, result.ok_bodies)
            shown = str(lost)
        print(
            f"{name:<6}  {result.percentile(50):>6.1f}  {result.percentile(99):>6.1f}  "
            f"{max(result.latencies_ms, default=float('nan')):>6.1f}  {len(result.ok_bodies):>6,}  {result.failed:>6}  "
            f"{shown:>4}  {result.max_lateness_ms:>6.1f}"
        )
        if result.errors or any(status >= 300 for status in result.statuses):
            print(f"        statuses {result.statuses}, errors {result.errors}")
    return lost


if __name__ == "__main__":
    sys.exit(harness.timed(main))
