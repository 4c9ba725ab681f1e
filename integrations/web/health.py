"""GET /healthz: does the database answer, and can it take a durable write right now?

Alerts the worker raised (integrations/ops/alerts.py, issue 18) make the status `degraded`
with their reasons; the answer stays 200: the service still takes webhooks.
"""

from __future__ import annotations

import hmac
import logging
import sqlite3

import psycopg
from flask import Blueprint, Response, request

from integrations.ingest.backlog import backlog
from integrations.jobs.leadership import LEADER_STATE
from integrations.web.dbconn import get_db, settings
from integrations.web.webhooks import json_response
from store.db import DatabaseUnavailable
from store.events import NORMALIZE_CURSOR, get_state
from store.health import write_probe
from store.ops import alert_rows

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """200 when the database answers and commits a write, 503 ("unavailable") when it does not.

    Counts and errors only with the API token as bearer: they tell strangers too much.

    `spool` (SQLite) or `intake` (PostgreSQL) tells how much acknowledged webhook data waits
    to be moved into raw_records (integrations/ingest/backlog.py).
    """
    try:
        db = get_db()
        waiting = backlog(db)
        spool = waiting.status(db)
        last_id = db.execute("SELECT max(id) FROM raw_records").fetchone()[0] or 0
        cursor = int(get_state(db, NORMALIZE_CURSOR, "0") or 0)
        pending = db.execute(
            "SELECT count(*) FROM raw_records WHERE id > ? AND source || '' = 'webhook'", [cursor]
        ).fetchone()[0]
        alerts = [
            {"alert": row["alert"], "subject": row["subject"], "since": row["raised_at"], "reason": row["message"]}
            for row in alert_rows(db, active_only=True)
        ]
        leader = get_state(db, LEADER_STATE)  # issue 19: which worker runs the scheduled jobs
    except (sqlite3.Error, psycopg.Error, OSError, DatabaseUnavailable) as e:
        log.error("health check failed: %s", e)
        return _answer({"status": "unavailable", "database": str(e)}, 503)
    try:
        # Reads answer on a full disk or a read-only file; webhooks need writes (issue 7).
        write_probe(db)
    except (DatabaseUnavailable, sqlite3.Error, psycopg.Error, OSError) as e:
        log.error("health check failed: database cannot take writes: %s", e)
        return _answer({"status": "unavailable", "database": "ok", "writes": str(e), waiting.name: spool}, 503)
    return _answer(
        {
            "status": "degraded" if alerts else "ok",
            "database": "ok",
            "records": last_id,
            "pending_normalization": pending,
            waiting.name: spool,
            "alerts": alerts,
            "worker_leader": leader,
        }
    )


def _authorized() -> bool:
    expected = settings().api_token
    if not expected:
        return False
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


def _answer(details: dict, status: int = 200) -> Response:
    """The details for a caller with the API token; only the status for anyone else (issue 14)."""
    if _authorized():
        return json_response(details, status)
    return json_response({"status": details["status"] if status == 200 else "unavailable"}, status)
