"""Shared fixtures: a fresh database per test, the real app, signed deliveries."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

import worker
from integrations.cli import context
from integrations.config import load_config
from integrations.web import create_app
from integrations.zoom.signature import sign
from store.db import open_db
from tests.pg_support import PgServer

SECRET = "test-webhook-secret"
API_TOKEN = "test-api-token-of-at-least-32-characters"  # issue 14: 32 at least
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class ServerLikeClient(FlaskClient):
    """A test client that closes each response once it is read, as a WSGI server does.

    PEP 3333 servers call the body's close() after sending it, and the webhook endpoint
    imports its spooled delivery there (integrations/ingest/webhook_path.py); werkzeug's client
    calls it only for buffered responses.
    """

    def open(self, *args, **kwargs):
        # GETs stay unbuffered: the read API's streamed answers are tested as streams.
        kwargs.setdefault("buffered", kwargs.get("method", "GET") != "GET")
        return super().open(*args, **kwargs)


Flask.test_client_class = ServerLikeClient


def make_config(tmp_path: Path, **overrides: str):
    """A Config for tests, built through load_config like production's."""
    env = {
        "ZOOM_WEBHOOK_SECRET_TOKEN": SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'attendance.db'}",
        "API_TOKEN": API_TOKEN,
        # Import each spooled delivery right after its answer, so a test reads it at once.
        "WEBHOOK_IMPORT_DELAY_SECONDS": "0",
    }
    env.update(overrides)
    return load_config({k: v for k, v in env.items() if v is not None}, dotenv=False)


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture(scope="session")
def pg_server():
    """One throwaway PostgreSQL server for the session (Debian's postgresql package)."""
    server = PgServer()
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server):
    """A new, empty PostgreSQL database for this test."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """DATABASE_URL of each store in turn: the tests that take it run on both (issue 19)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'attendance.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def app(config):
    app = create_app(config)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def db(app, config):
    database = open_db(config.database_path)
    yield database
    database.close()


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | str | None = None) -> dict[str, str]:
    """Headers Zoom would send with `body`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "x-zm-request-timestamp": ts,
        "x-zm-signature": sign(body, timestamp=ts, secret=secret),
        "content-type": "application/json",
    }


def post_event(client, event: dict | bytes, **kwargs):
    """POST a delivery as signed bytes to the real app."""
    body = event if isinstance(event, bytes) else json.dumps(event).encode()
    return client.post("/webhooks/zoom", data=body, headers=signed_headers(body, **kwargs))


@pytest.fixture
def runner_env(config, monkeypatch):
    """Run `worker.py` commands in-process against the test database."""
    monkeypatch.setattr(context, "load_config", lambda: config)

    def run(args):
        return CliRunner().invoke(worker.cli, args, catch_exceptions=False)

    return run


@pytest.fixture(autouse=True)
def fresh_rejection_log(monkeypatch):
    """Each test starts a new interval of the throttled 'rejected webhook' log (issue 14)."""
    from integrations.web import webhooks

    monkeypatch.setattr(webhooks, "rejected_log", webhooks.ThrottledLog(webhooks.log))
