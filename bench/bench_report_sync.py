"""Report sync throughput and memory: one participant report of N rows from the simulator.

The simulator (integrations/simulator/zoom_api.py) runs in its own process on 127.0.0.1 so
the figures are the sync's alone. The sync is the production path: ZoomClient over HTTP,
`fetch_participants` (page_size 300, next_page_token), `save_report_page` (one durable
transaction per page: raw page in the hash chain, rows upserted), `complete_fetch`.

    python bench/bench_report_sync.py                  # 60,000 rows = 200 pages, unpaced
    python bench/bench_report_sync.py --rows 18000 --rps 10
    python bench/bench_report_sync.py --postgres       # the same against a throwaway PostgreSQL

Prints rows/s, API calls (should be pages + 1 token), peak memory (tracemalloc peaks of a
separate traced run, and the process's peak RSS), and a re-sync that must add nothing.
Time and memory of `integrations.derived.refresh.refresh_instances` (the attendance engine, run after
each complete fetch) are shown apart from the fetch and store.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import shlex
import sys
import time
import tracemalloc
from pathlib import Path

# `python bench/bench_report_sync.py` from the repository: its root is not on the path otherwise.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import integrations.reports.sync  # noqa: E402
from bench.stores import add_store_options, bench_stores  # noqa: E402
from integrations.reports.sync import sync_instance  # noqa: E402
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar  # noqa: E402
from integrations.zoom.client import ZoomClient  # noqa: E402
from store.db import open_db  # noqa: E402
from store.migrations import migrate  # noqa: E402

WEBINAR_ID = "91234567890"
UUID = "/bench+Instance//Uuid=="  # needs double encoding, like some real ones


def serve(rows: int, pipe) -> None:
    """Child process: build the dataset, serve it, report the call counts when told to stop."""
    dataset = synthetic_webinar(rows=rows, webinar_id=WEBINAR_ID, uuid=UUID, seed=42)
    with ZoomSimulator(dataset) as sim:
        pipe.send({"env": sim.environ(), "rows": dataset.row_count})
        while pipe.recv() != "stop":
            pipe.send(dict(sim.calls))
            sim.reset_counts()
        pipe.send(dict(sim.calls))


class RefreshMeter:
    """Wraps integrations.derived.refresh.refresh_instances (the attendance engine, called after each
    complete fetch) so its time and memory are reported apart from the sync's own."""

    def __init__(self):
        self.module = integrations.reports.sync
        self.real = integrations.reports.sync.refresh_instances
        self.seconds = 0.0
        self.sync_peak = 0  # tracemalloc peak before the refresh started
        self.refresh_peak = 0
        self.module.refresh_instances = self

    def __call__(self, db, uuids) -> None:
        if tracemalloc.is_tracing():
            self.sync_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
        started = time.perf_counter()
        self.real(db, uuids)
        self.seconds = time.perf_counter() - started
        if tracemalloc.is_tracing():
            self.refresh_peak = tracemalloc.get_traced_memory()[1]


def sync_once(env: dict[str, str], db_path: str, rps: float):
    """One sync_instance of the benchmark report into `db_path`: (summary, seconds, (api calls, tokens))."""
    db = open_db(db_path)
    migrate(db)
    client = ZoomClient(
        account_id=env["ZOOM_ACCOUNT_ID"],
        client_id=env["ZOOM_CLIENT_ID"],
        client_secret=env["ZOOM_CLIENT_SECRET"],
        api_base_url=env["ZOOM_API_BASE_URL"],
        oauth_token_url=env["ZOOM_OAUTH_TOKEN_URL"],
        requests_per_second=rps,
    )
    started = time.perf_counter()
    summary = sync_instance(db, client, UUID, kind="webinar", meeting_id=WEBINAR_ID)
    elapsed = time.perf_counter() - started
    calls = (client.api_calls, client.token_requests)
    client.close()
    db.close()
    return summary, elapsed, calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60_000, help="report rows (default 60,000 = 200 pages)")
    parser.add_argument("--rps", type=float, default=0, help="client pacing, requests/s (default 0: unpaced)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.rows <= 600_000:
        parser.error("keep it bounded: 1 to 600,000 rows")
    command = "python bench/bench_report_sync.py " + shlex.join(sys.argv[1:] if argv is None else argv)

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    server = context.Process(target=serve, args=(args.rows, child), daemon=True)
    server.start()
    try:
        if not parent.poll(120):
            raise SystemExit("simulator did not start within 120 s")
        hello = parent.recv()
        env, rows = hello["env"], hello["rows"]
        pages = math.ceil(rows / 300)
        meter = RefreshMeter()
        with bench_stores(args, "bench-report-") as stores:
            summary, elapsed, (api_calls, tokens) = sync_once(env, stores.location("a.db"), args.rps)
            refresh_seconds = meter.seconds
            parent.send("counts")
            served = parent.recv()
            rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            again, again_elapsed, _ = sync_once(env, stores.location("a.db"), args.rps)
            again_refresh = meter.seconds
            parent.send("counts")
            parent.recv()
            tracemalloc.start()
            sync_once(env, stores.location("traced.db"), args.rps)
            tracemalloc.stop()
            db_mib = stores.size_mib("a.db")
            store_kind = stores.kind
        parent.send("stop")
        parent.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()

    ok = summary.rows == rows and summary.pages == pages and again.new_rows == 0 and api_calls == pages and tokens == 1
    print(f"command:        {command}")
    print(f"machine:        {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"store:          {store_kind}")
    print(f"report:         {rows:,} rows in {pages} pages (page_size 300), uuid needing double encoding")
    fetch_store = elapsed - refresh_seconds
    print(
        f"fetch + store:  {fetch_store:.2f} s, {rows / fetch_store:,.0f} rows/s ({summary.rows:,} rows stored, {summary.new_rows:,} new)"
    )
    print(
        f"derived tables: {refresh_seconds:.2f} s in integrations.derived.refresh.refresh_instances after the fetch completed"
    )
    print(f"total:          {elapsed:.2f} s, {rows / elapsed:,.0f} rows/s")
    print(
        f"API calls:      {api_calls} report pages + {tokens} token = {api_calls + tokens} (simulator counted {served})"
    )
    print(
        f"re-sync:        {again_elapsed - again_refresh:.2f} s fetch + store (+ {again_refresh:.2f} s derived), {again.rows:,} rows seen, {again.new_rows} new"
    )
    print(
        f"peak memory:    {meter.sync_peak / 2**20:.1f} MiB fetch + store, {meter.refresh_peak / 2**20:.1f} MiB derived refresh "
        f"(tracemalloc, a separate run); process peak RSS {rss_mib:.0f} MiB"
    )
    print(f"database:       {db_mib:.1f} MiB (raw pages + rows)")
    if args.rps:
        print(f"pacing:         {args.rps:g} req/s")
    else:
        print(
            f"pacing:         none; at the default 2 req/s the same fetch takes >= {(pages + 1) / 2:.0f} s of waiting"
        )
    print("check:          " + ("OK" if ok else "MISMATCH"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
