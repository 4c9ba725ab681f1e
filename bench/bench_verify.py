"""`worker.py verify` over 1,000,000 raw records (target: under 20 seconds).

Builds a database of chained raw records in a temporary directory (bench/raw_db.py), then
runs the real command as a separate process, once with its default workers and once in a
single process, and reports the time, CPU seconds and peak memory of its process tree.

    python bench/bench_verify.py                  # 1,000,000 records
    python bench/bench_verify.py --db /tmp/raw.db # reuse a database (bench_export.py --keep builds one)
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.raw_db import database_for_bench, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--report-every", type=int, default=1000, help="one report page per N records (0: none)")
    parser.add_argument("--db", help="database to use; built here if it does not exist")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database)")
    args = parser.parse_args(argv)
    if not 1 <= args.records <= 5_000_000:
        parser.error("--records must be 1 to 5,000,000")
    workdir = tempfile.mkdtemp(prefix="bench-verify-")
    try:
        db, built = database_for_bench(args.db, args.records, args.report_every, workdir)
        if built:
            print(
                f"built {db}: {built['records']:,} records ({built['report_pages']:,} report pages) in {built['seconds']:.1f}s"
            )
        failed = False
        for workers in (None, 1):
            command = [sys.executable, "worker.py", "verify", "--database", db]
            if workers:
                command += ["--workers", str(workers)]
            load = os.getloadavg()[0]
            seconds, cpu, peak_mb, code = run_measured(command, stdout=subprocess.DEVNULL)
            ok = code == 0 and seconds < 20
            label = "default workers" if workers is None else f"{workers} process"
            print(
                f"verify ({label}): exit {code} in {seconds:.2f}s; CPU {cpu:.2f}s; peak RSS of the process tree "
                f"{peak_mb:.0f} MB; load average before {load:.1f} [{'meets' if ok else 'MISSES'} < 20 s]"
            )
            print(f"       command: (cd {ROOT} && {shlex.join(command)})")
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
