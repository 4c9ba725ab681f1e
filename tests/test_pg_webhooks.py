"""The webhook path on PostgreSQL (issue 19): signed bytes committed to the intake before
the answer, then chained into raw_records in one order; redeliveries stored once."""

from __future__ import annotations

import json

from integrations.web import create_app
from store.audit import open_readonly, verify_chain
from store.db import open_db
from store.evidence import content_hash
from tests.conftest import make_config, post_event
from tests.fault_support import participant_body


def _pg_client(tmp_path, pg_url, **overrides):
    config = make_config(tmp_path, DATABASE_URL=pg_url, **overrides)
    app = create_app(config)
    app.config["TESTING"] = True
    return app.test_client(), config


def test_signed_deliveries_are_chained_in_raw_records(tmp_path, pg_url):
    client, _ = _pg_client(tmp_path, pg_url)
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


def test_a_redelivery_is_stored_once(tmp_path, pg_url):
    client, _ = _pg_client(tmp_path, pg_url)
    body = participant_body(1, run="again")
    assert [post_event(client, body).status_code for _ in range(3)] == [200, 200, 200]
    db = open_db(pg_url)
    try:
        assert db.execute("SELECT count(*) FROM raw_records WHERE sha256 = ?", [content_hash(body)]).fetchone()[0] == 1
    finally:
        db.close()
