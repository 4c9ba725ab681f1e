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

import os
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import raw_db  # noqa: E402


def count_lines(path: str) -> int:
    """Lines in a file, read in blocks (memory stays flat)."""
    lines = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = raw_db.database_arguments(__doc__.split("\n\n")[0], "keep the temporary directory (database and exports)")
    parser.add_argument("--workers", type=int, help="export-raw --workers (default: the command's own default)")
    args = raw_db.parse_database_arguments(parser, argv)
    with raw_db.bench_workdir(args, "bench-export-") as (workdir, db):
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
            seconds, cpu, peak_mb, code = raw_db.run_measured(command)
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
            raw_db.print_command(command)
            os.unlink(out)
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
