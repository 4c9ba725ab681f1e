"""Storage faults (issue 7): a full database or disk, a read-only database.

A full disk: webhooks get 503 and never a 2xx. A full or read-only database: webhooks are
still taken into the spool (on disk before the 200) and imported once the database takes
writes again. Either way /healthz turns 503, and once writes work again everything resumes
without a restart, with nothing half-written and nothing acknowledged lost."""

from __future__ import annotations

import logging
import os
import resource
import sqlite3
import time
from pathlib import Path

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.ingest.spool import spool_status
from store.db import DatabaseUnavailable, thread_db
from store.evidence import content_hash
from tests.conftest import API_TOKEN, post_event
from tests.fault_support import get, participant_body, post_signed, start_web, stored_hashes, verify_chain

DETAILS = {"Authorization": f"Bearer {API_TOKEN}"}


def app_connection(config):
    """The connection the app uses in this thread (the test client runs requests here)."""
    return thread_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)


def count(conn, table: str) -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_full_database_keeps_webhooks_in_the_spool_then_catches_up(app, client, config, caplog):
    caplog.set_level(logging.WARNING)
    # Deliveries waiting for normalization: more rows than the free space left will hold.
    pending = [participant_body(n, run="pending") for n in range(60)]
    assert {post_event(client, body).status_code for body in pending} == {200}
    db = app_connection(config)
    # A full database, for real: SQLite's pager refuses to grow the file past max_page_count
    # with SQLITE_FULL, the error a full disk gives.
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert db.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0] == pages

    # Webhooks are still taken: each is on disk in the spool before its 200 (the spool is a
    # file beside the database, not the database). Their import waits.
    acked = [participant_body(n, run="full") for n in range(400)]
    assert {post_event(client, body).status_code for body in acked} == {200}
    assert "spool import postponed" in caplog.text and "full" in caplog.text
    assert spool_status(db)["pending_bytes"] > 0

    health = client.get("/healthz", headers=DETAILS)
    assert health.status_code == 503, health.json
    assert "full" in health.json["writes"] and health.json["spool"]["pending_bytes"] > 0

    # Import and normalization on the full database fail whole: no rows, the cursor stays.
    with pytest.raises(DatabaseUnavailable):
        normalize_pending(db)
    assert count(db, "participant_events") == 0
    assert db.execute("SELECT value FROM state WHERE key = 'normalize_cursor'").fetchone() is None

    # Space is back (the limit lifts on the live connection): no restart, nothing lost.
    db.execute("PRAGMA max_page_count = 1073741823")
    assert client.get("/healthz").status_code == 200
    normalize_pending(db)
    everything = [*pending, *acked]
    assert set(stored_hashes(Path(config.database_path))) == {content_hash(b) for b in everything}
    assert count(db, "participant_events") == len(everything)
    assert verify_chain(Path(config.database_path)) == len(everything)
    assert spool_status(db)["pending_bytes"] == 0


def test_read_only_database_keeps_webhooks_in_the_spool_then_catches_up(app, client, config, caplog):
    caplog.set_level(logging.WARNING)
    assert post_event(client, participant_body(0, run="ro")).status_code == 200
    db = app_connection(config)
    # The app's connection becomes read-only: SQLite answers SQLITE_READONLY, as for a
    # read-only file (chmod cannot show it: the tests run as root in CI).
    db.execute("PRAGMA query_only = ON")
    later = [participant_body(n, run="ro") for n in range(1, 4)]
    assert [post_event(client, body).status_code for body in later] == [200] * 3
    assert "spool import postponed" in caplog.text and "readonly" in caplog.text
    health = client.get("/healthz", headers=DETAILS)
    assert health.status_code == 503 and "readonly" in health.json["writes"]
    assert verify_chain(Path(config.database_path)) == 1

    db.execute("PRAGMA query_only = OFF")
    assert client.get("/healthz").status_code == 200
    normalize_pending(db)
    assert verify_chain(Path(config.database_path)) == 4
    assert count(db, "participant_events") == 4


def group_pids(pgid: int) -> list[int]:
    """Every process in process group `pgid` (gunicorn's master and workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                pids.append(int(entry))
    return pids


def limit_file_size(pids: list[int], limit: int) -> None:
    """Set RLIMIT_FSIZE of running processes: a file may not grow past `limit` bytes."""
    for pid in pids:
        _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        soft = hard if limit == resource.RLIM_INFINITY or hard != resource.RLIM_INFINITY and hard < limit else limit
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.slow
def test_disk_full_in_the_real_web_process_gives_503_then_resumes(tmp_path):
    database = tmp_path / "attendance.db"
    web = start_web(database)
    try:
        first = participant_body(0, run="disk")
        assert post_signed(web.port, first)[0] == 200
        # Master and 2 workers: the second may still be booting when the first answers.
        deadline = time.monotonic() + 30
        while len(pids := group_pids(web.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids) >= 3, pids
        # The kernel refuses to grow any file these processes write (EFBIG; Python ignores
        # SIGXFSZ): every WAL append fails as it does on a full disk. Reads still work.
        limit_file_size(pids, 1)
        refused = [participant_body(n, run="disk") for n in range(1, 9)]
        statuses = [post_signed(web.port, body)[0] for body in refused]
        assert statuses == [503] * len(refused)
        healths = [get(web.port, "/healthz")[0] for _ in range(4)]
        assert healths == [503] * 4

        limit_file_size(pids, resource.RLIM_INFINITY)  # space is back
        assert [get(web.port, "/healthz")[0] for _ in range(4)] == [200] * 4
        stored = stored_hashes(database)
        assert not any(content_hash(b) in stored for b in refused), "a refused delivery was stored"
        assert [post_signed(web.port, body)[0] for body in refused] == [200] * len(refused)
    finally:
        web.stop()
    assert "cannot store webhook, answering 503" in web.log()
    assert "cannot take writes" in web.log()
    stored = stored_hashes(database)
    assert set(stored) == {content_hash(b) for b in [first, *refused]}
    assert verify_chain(database) == 1 + len(refused)
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
