"""The webhook path on PostgreSQL (issue 19): signed bytes committed to the intake before
the answer, then chained into raw_records in one order; redeliveries stored once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.ingest.webhook_path import ingest
from integrations.jobs.scheduler import normalize_job
from integrations.ops.doctor import OK, SKIPPED, check_database
from integrations.web import create_app
from store import db as store_db
from store.audit import open_readonly, verify_chain
from store.db import open_db
from store.evidence import content_hash
from store.intake import intake_status
from tests.conftest import API_TOKEN, make_config, post_event
from tests.fault_support import ROOT, participant_body


@pytest.fixture
def pg_client(tmp_path, pg_url):
    """A client of the real app on `pg_url`; its pool, threads and sessions closed after."""
    made = []

    def make(**overrides):
        config = make_config(tmp_path, DATABASE_URL=pg_url, **overrides)
        app = create_app(config)
        app.config["TESTING"] = True
        made.append(config)
        return app.test_client()

    yield make
    for config in made:
        ingest(config).close()
    for key in [k for k in getattr(store_db._local, "dbs", {}) if k[1] == pg_url]:
        store_db._local.dbs.pop(key).close()


def test_signed_deliveries_are_chained_in_raw_records(pg_client, pg_url):
    client = pg_client()
    bodies = [participant_body(n, run="pg") for n in range(5)]
    for body in bodies:
        response = post_event(client, body)
        assert response.status_code == 200, response.data
    db = open_db(pg_url)
    try:
        stored = {r["sha256"]: bytes(r["body"]) for r in db.query("SELECT sha256, body FROM raw_records")}
        assert stored == {content_hash(b): b for b in bodies}
        assert db.execute("SELECT count(*) FROM webhook_intake").fetchone()[0] == 0
        ids = [r[0] for r in db.execute("SELECT id FROM raw_records ORDER BY id")]
        assert ids == [1, 2, 3, 4, 5]
    finally:
        db.close()
    audited = open_readonly(pg_url)
    try:
        assert verify_chain(audited).count == 5
    finally:
        audited.close()


def test_a_redelivery_is_stored_once(pg_client, pg_url):
    client = pg_client()
    body = participant_body(1, run="again")
    assert [post_event(client, body).status_code for _ in range(3)] == [200, 200, 200]
    db = open_db(pg_url)
    try:
        assert db.execute("SELECT count(*) FROM raw_records WHERE sha256 = ?", [content_hash(body)]).fetchone()[0] == 1
    finally:
        db.close()


def test_healthz_and_metrics_report_the_intake_and_no_disk_figure(pg_client, pg_url):
    client = pg_client(WEBHOOK_IMPORT_DELAY_SECONDS="3600")
    body = participant_body(7, run="waiting")
    assert post_event(client, body).status_code == 200
    ingest(client.application.config["SETTINGS"]).chainer.stop()  # leave it waiting in the intake
    health = client.get("/healthz", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert health.status_code == 200, health.data
    details = health.get_json()
    assert "spool" not in details
    assert details["intake"]["deliveries"] == 1 and details["intake"]["oldest_received_at"]
    scraped = client.get("/metrics").data.decode()
    assert "attendance_intake_deliveries 1.0" in scraped
    assert 'attendance_oldest_unimported_delivery_age_seconds{stage="intake"}' in scraped
    assert "attendance_disk_free_bytes" not in scraped and "attendance_spool_files" not in scraped

    db = open_db(pg_url)
    try:
        checks = {c.name: c for c in check_database(db, min_free_bytes=1)}
        assert checks["database writable"].status == OK and "***" not in checks["database writable"].detail
        assert checks["database integrity"].status == OK
        assert checks["disk space"].status == SKIPPED
        assert normalize_pending(db) == ["fault-waiting=="]  # the worker chains what waits, then normalizes
        assert intake_status(db) == (0, None)
        assert db.execute("SELECT count(*) FROM raw_records").fetchone()[0] == 1
    finally:
        db.close()


def test_web_processes_starting_on_a_new_database_at_once_all_migrate_it(pg_url):
    # Two gunicorn masters started together each migrate at boot: PostgreSQL's concurrent
    # CREATE TABLE IF NOT EXISTS failed all but one of them (seen starting the bench).
    script = (
        "import sys; from store.db import open_db; from store.migrations import migrate; migrate(open_db(sys.argv[1]))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, pg_url], cwd=ROOT, stderr=subprocess.PIPE) for _ in range(4)
    ]
    errors = [p.communicate(timeout=60)[1].decode()[-500:] for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, errors


def test_the_normalize_job_logs_one_warning_when_the_server_is_down(tmp_path, pg_server, caplog):
    config = make_config(tmp_path, DATABASE_URL=f"postgresql://{pg_server.user}@127.0.0.1:1/none")
    normalize_job(config)  # no exception: APScheduler would log a traceback every second
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "normalization postponed, database unavailable" in caplog.records[0].getMessage()
