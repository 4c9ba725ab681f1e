"""The audit trail while the service writes: exports, verify and backup against the Procfile's
web process (gunicorn, several workers) receiving signed webhooks on 127.0.0.1 (issue 5)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from integrations.audit.export import raw_log_lines
from store.audit import open_readonly, verify_chain
from tests.audit_support import ROOT, run_worker
from tests.conftest import API_TOKEN
from tests.fault_support import get, participant_body, post_signed, process_env, start_web, wait_for_records

pytestmark = pytest.mark.slow

WRITERS = 3
MAX_POSTS_PER_WRITER = 20_000  # a bound, far off: the test stops the writers once it has checked enough (1,500 ran out before three backups on a loaded machine)


class Posters:
    """Threads posting distinct signed deliveries until stopped; they record what was acknowledged."""

    def __init__(self, port: int, run: str):
        self.port = port
        self.acknowledged: list[bytes] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, args=(f"{run}{w}",)) for w in range(WRITERS)]

    def _post(self, run: str) -> None:
        for n in range(MAX_POSTS_PER_WRITER):
            if self._stop.is_set():
                return
            body = participant_body(n, run=run)
            try:
                status, answer = post_signed(self.port, body, timeout=15)
            except OSError as e:
                status, answer = 0, str(e).encode()
            with self._lock:
                if status == 200:
                    self.acknowledged.append(body)
                else:
                    self.failures.append(f"{status} {answer[:200]!r}")

    def __enter__(self) -> Posters:
        for t in self._threads:
            t.start()
        return self

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` deliveries were acknowledged."""
        deadline = time.monotonic() + timeout
        while len(self.acknowledged) < count and self.running() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.acknowledged) >= count, self.failures[:3]

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)
        assert not self.running(), "posters did not finish"


PARALLEL_EXPORT = """
import os, sys
from integrations.audit import export_parallel as raw_export_parallel
raw_export_parallel.SLICE_RECORDS = 7
raw_export_parallel.export_to_fd(sys.argv[1], "jsonl", sys.stdout.fileno(), workers=2)
"""


def parallel_export(database: Path) -> list[dict]:
    """export_to_fd with two worker processes and small slices, run in its own process (as the CLI does)."""
    result = subprocess.run(
        [sys.executable, "-c", PARALLEL_EXPORT, str(database)], cwd=ROOT, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def assert_consistent_log(lines: list[dict]) -> int:
    """An export taken mid-ingestion is a gapless prefix of the log, each raw matching its hash."""
    ids = [line["record_id"] for line in lines]
    assert ids == list(range(1, len(ids) + 1))
    for line in lines:
        assert hashlib.sha256(line["raw"].encode()).hexdigest() == line["sha256"]
    return len(ids)


def test_exports_and_verify_stay_consistent_while_several_workers_write(tmp_path):
    database = tmp_path / "live.db"
    # Imports every 50 ms, so the readers below see the log grow while deliveries arrive.
    web = start_web(database, WEB_CONCURRENCY="3", WEBHOOK_IMPORT_DELAY_SECONDS="0.05")
    try:
        exports, verified = [], []
        with Posters(web.port, "x") as posters:
            posters.wait_for(20)
            assert wait_for_records(database, 1) >= 1
            deadline = time.monotonic() + 60
            while len(verified) < 4 and posters.running() and time.monotonic() < deadline:
                # Over HTTP, streamed by one of the workers that are taking the posts.
                status, data = get(
                    web.port, "/api/raw-events", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=30
                )
                assert status == 200
                exports.append(assert_consistent_log([json.loads(line) for line in data.splitlines()]))
                # And from a separate reader, as the CLI reads.
                db = open_readonly(str(database))
                try:
                    exports.append(assert_consistent_log(list(raw_log_lines(db.conn))))
                    verified.append(verify_chain(db).count)
                finally:
                    db.close()
                # And export-raw's worker processes, in slices of 7 records.
                exports.append(assert_consistent_log(parallel_export(database)))
            still_writing = posters.running()
            if still_writing:
                posters.wait_for(max(exports) + 1)  # deliveries went on after the last check
        assert posters.failures == []
        assert still_writing and len(verified) == 4, "the checks did not all run while deliveries were arriving"
        total = len(posters.acknowledged)
        assert exports == sorted(exports) and verified == sorted(verified)  # each sees a later prefix
        assert 0 < exports[0] and exports[-1] < total
        assert wait_for_records(database, total) == total  # the web processes' last imports

        result = run_worker("verify", "--database", str(database))
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().startswith(f"OK {total} records, head ")
        final = run_worker("export-raw", "--database", str(database)).stdout
        raws = [json.loads(line)["raw"].encode() for line in final.splitlines()]
        assert sorted(raws) == sorted(posters.acknowledged)  # every acknowledged delivery exactly once
    finally:
        web.stop()


def test_backup_while_writing_is_a_consistent_owner_only_copy(tmp_path):
    database = tmp_path / "live.db"
    web = start_web(database, WEBHOOK_IMPORT_DELAY_SECONDS="0.05")
    env = process_env(database)
    try:
        backups: list[tuple[Path, int]] = []
        with Posters(web.port, "b") as posters:
            posters.wait_for(20)
            assert wait_for_records(database, 1) >= 1
            while posters.running() and len(backups) < 3:
                with contextlib.closing(sqlite3.connect(database)) as conn:
                    count_before = conn.execute("SELECT count(*) FROM raw_records").fetchone()[0]
                target = tmp_path / f"backup-{len(backups)}.db"
                result = run_worker("backup", str(target), env=env)
                assert result.returncode == 0, result.stderr
                assert result.stdout.decode().startswith("backed up ")
                backups.append((target, count_before))
            still_writing = posters.running()
        assert posters.failures == []
        assert still_writing and len(backups) == 3, "the backups did not all run while deliveries were arriving"
        assert wait_for_records(database, len(posters.acknowledged)) == len(posters.acknowledged)
        with contextlib.closing(sqlite3.connect(database)) as final:
            live = dict(final.execute("SELECT id, chain_hash FROM raw_records"))
        assert len(live) == len(posters.acknowledged)
        for target, count_before in backups:
            assert os.stat(target).st_mode & 0o777 == 0o600
            assert not Path(str(target) + "-wal").exists()
            copy = open_readonly(str(target))
            try:
                head = verify_chain(copy)
                assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                assert copy.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
                copied = dict(copy.execute("SELECT id, chain_hash FROM raw_records"))
            finally:
                copy.close()
            assert count_before <= head.count <= len(live)
            assert copied == {i: live[i] for i in copied}  # a prefix of the live log, unchanged
    finally:
        web.stop()


def test_backup_refuses_to_overwrite_the_live_database(db, config):
    result = run_worker("backup", config.database_path, "--database", config.database_path)
    assert result.returncode == 1
    assert b"cannot be the live database" in result.stderr
