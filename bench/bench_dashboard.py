"""Benchmark: the dashboard at record scale (issue 15, "Fast at record scale").

Builds bench_attendance.py's webinar (PEOPLE people, SEGMENTS connections from both
sources, a complete report), refreshes the derived tables, signs in through the real app
(in this process, no network) and times, as medians of RUNS requests:

- the instance page's HTML (target < 300 ms);
- its data JSON, the concurrency curve and histogram (target < 300 ms);
- one attendance table page, unfiltered and searched by email (target < 100 ms);
- the page's total transfer: HTML + data JSON + CSS + scripts (target < 500 KB).

    python bench/bench_dashboard.py [--people 20000] [--segments 60000] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_attendance import (  # noqa: E402
    UUID,
    make_people,
    store_instance_window,
    store_report,
    store_webhooks,
)
from integrations.config import load_config  # noqa: E402
from integrations.derived.refresh import refresh_instances  # noqa: E402
from integrations.web import create_app  # noqa: E402
from store.db import open_db  # noqa: E402
from store.migrations import migrate  # noqa: E402


def build(path: str, people: int, segments: int) -> None:
    """bench_attendance's ended webinar, both sources, derived tables computed."""
    db = open_db(path, lock_timeout=30)
    migrate(db)
    connections, registrants = make_people(people, segments, random.Random(7))
    store_instance_window(db)
    store_webhooks(db, connections)
    store_report(db, connections, registrants)
    refresh_instances(db, [UUID], force=True)
    db.close()


def timed(client, url: str, runs: int) -> tuple[float, int]:
    """(median seconds, bytes) of GET `url`, after one warm-up request."""
    client.get(url).get_data()
    times, size = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        size = len(response.get_data())
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--segments", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    path = os.path.join(tempfile.mkdtemp(prefix="bench-dashboard-"), "attendance.db")
    started = time.perf_counter()
    build(path, opts.people, opts.segments)
    print(
        f"setup: {opts.people} people, {opts.segments} connections ({time.perf_counter() - started:.1f} s, not timed)"
    )

    config = load_config(
        {"DATABASE_URL": f"sqlite:///{path}", "API_TOKEN": "bench", "SECRET_KEY": "bench-key"}, dotenv=False
    )
    client = create_app(config).test_client()
    found = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True))
    if found is None:
        raise SystemExit("the login page has no CSRF token")
    token = found.group(1)
    assert client.post("/login", data={"csrf_token": token, "password": "bench"}).status_code == 302

    q = quote(UUID, safe="")
    figures = [
        ("instance page HTML", f"/instance?uuid={q}&min_minutes=60", 0.300),
        ("instance data JSON (curve + histogram)", f"/instance/data.json?uuid={q}&min_minutes=60", 0.300),
        ("attendance table page 1", f"/attendance?uuid={q}&min_minutes=60", 0.100),
        ("attendance table page 200, sorted by name", f"/attendance?uuid={q}&sort=name&dir=asc&page=200", 0.100),
        ("attendance table searched by email", f"/attendance?uuid={q}&q=person1234%40example.org", 0.100),
        ("attendance table, not eligible", f"/attendance?uuid={q}&min_minutes=60&show=not-eligible", 0.100),
    ]
    sizes = {}
    for label, url, target in figures:
        seconds, size = timed(client, url, opts.runs)
        sizes[url] = size
        verdict = "ok" if seconds < target else "OVER TARGET"
        print(
            f"{label}: median {seconds * 1000:.0f} ms of {opts.runs}, {size / 1024:.1f} KB (target {target * 1000:.0f} ms: {verdict})"
        )
    static = 0
    for name in ("dashboard.css", "instance.js", "vendor/uplot/uPlot.iife.min.js", "vendor/uplot/uPlot.min.css"):
        response = client.get(f"/dashboard/static/{name}")
        static += len(response.get_data())
        response.close()
    total = sizes[figures[0][1]] + sizes[figures[1][1]] + static
    print(
        f"instance page total transfer (HTML + data JSON + CSS + scripts, uncompressed): {total / 1024:.1f} KB "
        f"(target 500 KB: {'ok' if total < 500 * 1024 else 'OVER TARGET'})"
    )


if __name__ == "__main__":
    main()
