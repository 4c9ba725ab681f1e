"""`worker.py verify` over 1,000,000 raw records (target: under 20 seconds).

Builds a database of chained raw records in a temporary directory (bench/raw_db.py), then
runs the real command as a separate process, once with its default workers and once in a
single process, and reports the time, CPU seconds and peak memory of its process tree.

    python bench/bench_verify.py                  # 1,000,000 records
    python bench/bench_verify.py --db /tmp/raw.db # reuse a database (bench_export.py --keep builds one)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import raw_db  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = raw_db.parse_database_arguments(
        raw_db.database_arguments(__doc__.split("\n\n")[0], "keep the temporary directory (database)"), argv
    )
    with raw_db.bench_workdir(args, "bench-verify-") as (_, db):
        failed = False
        for workers in (None, 1):
            command = [sys.executable, "worker.py", "verify", "--database", db]
            if workers:
                command += ["--workers", str(workers)]
            load = os.getloadavg()[0]
            seconds, cpu, peak_mb, code = raw_db.run_measured(command, stdout=subprocess.DEVNULL)
            ok = code == 0 and seconds < 20
            label = "default workers" if workers is None else f"{workers} process"
            print(
                f"verify ({label}): exit {code} in {seconds:.2f}s; CPU {cpu:.2f}s; peak RSS of the process tree "
                f"{peak_mb:.0f} MB; load average before {load:.1f} [{'meets' if ok else 'MISSES'} < 20 s]"
            )
            raw_db.print_command(command)
            failed |= not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
