"""Raw join-log export speed and memory: `worker.py export-raw` over 1,000,000 raw records.

Builds a database of chained raw records in a temporary directory (bench/raw_db.py: mostly
webinar join/leave deliveries, one 300-row report page every --report-every records),
then runs the real command once per format as a separate process and reports records/s,
lines/s, CPU seconds and the peak memory of its process tree (the command and its worker
processes, summed). Target: >= 100,000 records/s and < 200 MB.

    python bench/bench_export.py                       # 1,000,000 records, JSONL and CSV
    python bench/bench_export.py --workers 1           # the single-process export
    python bench/bench_export.py --records 200000 --report-every 0
    python bench/bench_export.py --db /tmp/raw.db      # reuse a database built before (kept with --keep)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.raw_db import database_for_bench, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def count_lines(path: str) -> int:
    """Lines in a file, read in blocks (memory stays flat)."""
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--report-every", type=int, default=1000, help="one report page per N records (0: none)")
    parser.add_argument("--workers", type=int, help="export-raw --workers (default: the command's own default)")
    parser.add_argument("--db", help="database to use; built here if it does not exist")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database and exports)")
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 5_000_000:
        parser.error("--records must be 1 to 5,000,000")
    workdir = tempfile.mkdtemp(prefix="bench-export-")
    try:
        db, built = database_for_bench(args.db, args.records, args.report_every, workdir)
        if built:
            print(
                f"built {db}: {built['records']:,} records ({built['report_pages']:,} report pages) in {built['seconds']:.1f}s"
            )
        conn = sqlite3.connect(db)
        records = conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
        conn.close()
        failed = False
        for fmt in ("jsonl", "csv"):
            out = os.path.join(workdir, f"export.{fmt}")
            command = [sys.executable, "worker.py", "export-raw", "--database", db, "--format", fmt, "--output", out]
            if args.workers:
                command += ["--workers", str(args.workers)]
            load = os.getloadavg()[0]
            seconds, cpu, peak_mb, code = run_measured(command)
            if code != 0:
                print(f"{fmt}: command failed with exit code {code}")
                failed = True
                continue
            lines = count_lines(out) - (1 if fmt == "csv" else 0)
            ok = records / seconds >= 100_000 and peak_mb < 200
            print(
                f"{fmt:5s}: {records:,} records -> {lines:,} lines, {os.path.getsize(out) / 1e6:,.0f} MB in {seconds:.2f}s = "
                f"{records / seconds:,.0f} records/s ({lines / seconds:,.0f} lines/s); CPU {cpu:.2f}s; "
                f"peak RSS of the process tree {peak_mb:.0f} MB; load average before {load:.1f} "
                f"[{'meets' if ok else 'MISSES'} >= 100,000 records/s, < 200 MB]"
            )
            print(f"       command: (cd {ROOT} && {shlex.join(command)})")
            os.unlink(out)
            failed |= not ok
        print("figures vary with other load on this 2-core machine: compare only within one run")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
