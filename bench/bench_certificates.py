"""Benchmark: issue and render the certificates of a 12,000-person webinar (issue 17, "Speed").

Builds (untimed) an ended webinar from webhook evidence with PEOPLE people with names in
Latin with diacritics, Greek and Cyrillic (bench_attendance's generator), computes the
derived tables, then times what the organizer runs:

- issue: eligibility from the attendance engine, one Ed25519 signature and one chained
  event per certificate, one write transaction;
- pdf: one A4 PDF per certificate with its QR code, files 0600, WORKERS processes,
  with click's progress bar on stderr.

Target: both together under 60 s on this 2-core machine.

    python bench/bench_certificates.py [--people 12000] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_attendance import MINUTES, START, UUID, WEBINAR, iso, make_people, store_webhooks  # noqa: E402
from integrations.certificates.eligibility import eligible_people  # noqa: E402
from integrations.certificates.issue import issue_to_eligible  # noqa: E402
from integrations.certificates.keys import write_new_key  # noqa: E402
from integrations.certificates.output import render_certificates  # noqa: E402
from integrations.certificates.template import Template  # noqa: E402
from integrations.derived.refresh import refresh_instances  # noqa: E402
from store.certificates import list_certificates  # noqa: E402
from store.db import durable_write, open_db  # noqa: E402
from store.events import upsert_instance  # noqa: E402
from store.migrations import migrate  # noqa: E402

FIRST = ["Zoë", "Ана", "Γιώργος", "José", "Łukasz", "Ærlig", "Nguyễn", "Ιωάννα", "Дмитрий", "Søren", "Ayşe", "Chloé"]
LAST = ["Ångström", "Петрова", "Παπαδόπουλος", "Müller-Lüdenscheidt", "Wróblewska", "Đorđević", "Kovač", "Ñúñez"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=12_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    opts = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    directory = tempfile.mkdtemp(prefix="bench-certificates-")
    try:
        run(directory, opts.people, opts.workers)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(directory: str, people: int, workers: int) -> None:
    path = os.path.join(directory, "attendance.db")
    db = open_db(path, lock_timeout=30)
    migrate(db)
    rng = random.Random(17)
    connections, _ = make_people(people, people, rng)
    for c in connections:
        number = int(c["name"].split()[-1])
        c["name"] = f"{FIRST[number % len(FIRST)]} {LAST[number // len(FIRST) % len(LAST)]} {number}"
    t = time.perf_counter()
    with durable_write(db) as conn:
        for event, moment in (("started", START), ("ended", START + timedelta(minutes=MINUTES))):
            upsert_instance(
                conn,
                {
                    "instance_uuid": UUID,
                    "meeting_id": WEBINAR,
                    "kind": "webinar",
                    "topic": "Bench webinar: teaching with evidence",
                    "event_ts": int(moment.timestamp() * 1000),
                    event: True,
                    "start_time": iso(START),
                    "end_time": iso(moment),
                },
            )
    store_webhooks(db, connections)
    refresh_instances(db, [UUID], lock_timeout=60)
    key = write_new_key(os.path.join(directory, "key.pem"))
    print(f"setup: {people} people, {len(connections)} connections ({time.perf_counter() - t:.1f} s, not timed)")

    started = time.perf_counter()
    found = eligible_people(db, UUID, "attended", now=int(START.timestamp()) + 86400)
    outcome = issue_to_eligible(db, found, key=key)
    issued = time.perf_counter()
    print(f"issue: {len(outcome.issued)} certificates in {issued - started:.1f} s")

    rows = list_certificates(db, WEBINAR)
    template = Template(organizer="Bench Ministry of Education", signatory="Dr. Ana Kovač", signatory_role="Director")
    out = os.path.join(directory, "pdf")
    names = render_certificates(rows, template, "https://certificates.example.org", out, workers=workers)
    with click.progressbar(names, length=len(rows), label="rendering", file=sys.stderr) as bar:
        for _ in bar:
            pass
    rendered = time.perf_counter()
    sizes = [entry.stat().st_size for entry in os.scandir(out)]
    print(
        f"pdf: {len(sizes)} files in {rendered - issued:.1f} s with {workers} workers "
        f"({len(sizes) / (rendered - issued):.0f}/s), {sum(sizes) / len(sizes) / 1024:.1f} KiB each, "
        f"{sum(sizes) / 2**20:.0f} MiB in all"
    )
    print(f"issue + pdf: {rendered - started:.1f} s (target < 60 s), load average {os.getloadavg()[0]:.1f}")
    db.close()


if __name__ == "__main__":
    main()
