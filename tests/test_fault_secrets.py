"""Secrets (issue 7): no secret reaches logs, error answers or exports, even while things fail;
the read API compares tokens in constant time; the database files are owner-only."""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import time
from datetime import UTC, datetime, timedelta

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from integrations.web import api
from integrations.zoom.signature import sign
from store.db import open_db, write_lock
from tests.fault_support import (
    get,
    insert_deliveries,
    post_signed,
    process_env,
    procfile_line,
    request,
    start_procfile,
    start_web,
)

WEBHOOK_SECRET = "whsec-Zq8-webhook-secret-value"
API_SECRET = "apitok-7Hk-read-api-token-value-of-32-chars"
CLIENT_SECRET = "clsec-Yv2-zoom-client-secret-value"
SECRETS = {
    "ZOOM_WEBHOOK_SECRET_TOKEN": WEBHOOK_SECRET,
    "API_TOKEN": API_SECRET,
    "ZOOM_CLIENT_SECRET": CLIENT_SECRET,
    "ZOOM_ACCOUNT_ID": "acct-secret-test",
    "ZOOM_CLIENT_ID": "client-id-secret-test",
}


def leaked(text: str | bytes, extra: tuple[str, ...] = ()) -> list[str]:
    """Which secrets (or their Basic-auth encoding) appear in `text`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    basic = base64.b64encode(f"{SECRETS['ZOOM_CLIENT_ID']}:{CLIENT_SECRET}".encode()).decode()
    return [s for s in (WEBHOOK_SECRET, API_SECRET, CLIENT_SECRET, basic, *extra) if s and s in text]


def sign_with(body: bytes, secret: str, ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {
        "x-zm-request-timestamp": ts,
        "x-zm-signature": sign(body, timestamp=ts, secret=secret),
        "content-type": "application/json",
    }


@pytest.mark.slow
def test_no_secret_in_web_logs_or_answers_while_failing(tmp_path):
    database = tmp_path / "attendance.db"
    web = start_web(database, LOG_LEVEL="DEBUG", **SECRETS)
    answers: list[tuple[int, bytes]] = []
    try:
        port = web.port
        good = json.dumps(
            {"event": "meeting.participant_joined", "payload": {"object": {"uuid": "u", "participant": {}}}}
        ).encode()
        answers.append(request(port, "POST", "/webhooks/zoom", good, sign_with(good, WEBHOOK_SECRET)))
        answers.append(request(port, "POST", "/webhooks/zoom", good, sign_with(good, "wrong-secret")))
        answers.append(request(port, "POST", "/webhooks/zoom", good, {"x-zm-signature": "v0=" + WEBHOOK_SECRET}))
        answers.append(request(port, "POST", "/webhooks/zoom", b"{not json", sign_with(b"{not json", WEBHOOK_SECRET)))
        answers.append(
            request(port, "POST", "/webhooks/zoom", good + b" ", sign_with(good + b" ", WEBHOOK_SECRET, "1000"))
        )
        challenge = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "plain-123"}}).encode()
        answers.append(request(port, "POST", "/webhooks/zoom", challenge, sign_with(challenge, WEBHOOK_SECRET)))
        answers.append(
            request(port, "POST", "/webhooks/zoom", b"x" * (1024 * 1024 + 10), sign_with(b"x", WEBHOOK_SECRET))
        )
        answers.append(request(port, "GET", "/webhooks/zoom"))
        for header in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic " + API_SECRET},
            {"Authorization": f"Bearer {API_SECRET}x"},
        ):
            answers.append(get(port, "/api/meetings", headers=header))
        # The database failing: the write lock is held past the bound. The webhook is still
        # accepted (it is on disk in the spool); the health check and the import fail and log.
        with write_lock(str(database)).hold(timeout=10):
            body = b'{"event":"meeting.started","payload":{}}'
            answers.append(request(port, "POST", "/webhooks/zoom", body, sign_with(body, WEBHOOK_SECRET)))
            answers.append(get(port, "/healthz"))
    finally:
        web.stop()
    statuses = [status for status, _ in answers]
    assert 503 in statuses and 401 in statuses and 413 in statuses, statuses
    for status, body in answers:
        assert leaked(body) == [], (status, body)
    log = web.log()
    assert "cannot take writes" in log and "rejected webhook" in log  # the failures were logged
    assert leaked(log) == []


def ended_webinar_event(end: datetime, webinar_id: str, uuid: str) -> bytes:
    start = end - timedelta(minutes=60)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    obj = {
        "id": webinar_id,
        "uuid": uuid,
        "host_id": "h",
        "topic": "t",
        "type": 5,
        "start_time": start.strftime(fmt),
        "end_time": end.strftime(fmt),
    }
    return json.dumps(
        {
            "event": "webinar.ended",
            "event_ts": int(end.timestamp() * 1000),
            "payload": {"account_id": "a", "object": obj},
        }
    ).encode()


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["wrong_client_secret", "api_errors"])
def test_no_secret_in_worker_logs_while_zoom_fails(tmp_path, failure):
    database = tmp_path / "attendance.db"
    webinar_id, uuid = "94567890123", "sEcReT+uuid/1=="
    end = datetime.now(UTC) - timedelta(hours=1)  # its first report fetch is due now
    dataset = synthetic_webinar(50, webinar_id=webinar_id, uuid=uuid, start=end - timedelta(minutes=60))
    insert_deliveries(database, [ended_webinar_event(end, webinar_id, uuid)])
    normalize_pending(open_db(str(database)))
    with ZoomSimulator(
        dataset, account_id=SECRETS["ZOOM_ACCOUNT_ID"], client_id=SECRETS["ZOOM_CLIENT_ID"], client_secret=CLIENT_SECRET
    ) as sim:
        env = process_env(
            database,
            LOG_LEVEL="DEBUG",
            ZOOM_MAX_RETRIES="1",
            ZOOM_TIMEOUT_SECONDS="2",
            **sim.environ(),
            API_TOKEN=API_SECRET,
        )
        if failure == "wrong_client_secret":
            env["ZOOM_CLIENT_SECRET"] = CLIENT_SECRET + "-revoked"
        else:
            sim.add_fault("participants", "server_error", times=100)
        worker = start_procfile(procfile_line("worker"), env)
        try:
            expected = (
                "Zoom rejected the Server-to-Server OAuth credentials"
                if failure == "wrong_client_secret"
                else "HTTP 500"
            )
            deadline = time.monotonic() + 30
            while expected not in worker.log() and time.monotonic() < deadline and worker.process.poll() is None:
                time.sleep(0.1)
        finally:
            worker.stop()
        tokens = tuple(sim._tokens)  # access tokens the simulator issued: secrets too
    log = worker.log()
    assert expected in log, log[-3000:]
    assert leaked(log, tokens + (CLIENT_SECRET + "-revoked",)) == []


def test_read_api_compares_the_token_in_constant_time(app, client, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    expected = app.config["SETTINGS"].api_token
    for header, status in (
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer wrong-token"}, 401),
        ({"Authorization": f"Bearer {expected[:-1]}"}, 401),
        ({"Authorization": f"Basic {expected}"}, 401),
        ({"Authorization": f"Bearer {expected}"}, None),
    ):
        with app.test_request_context("/api/meetings", headers=header):
            answer = api.require_token()
        if status is None:
            assert answer is None
        else:
            assert answer is not None and answer.status_code == status and expected not in answer.get_data(as_text=True)
    # Every token that reached a comparison went through hmac.compare_digest.
    assert (b"wrong-token", expected.encode()) in compared
    assert (expected.encode(), expected.encode()) in compared


def file_modes(database) -> dict[str, int]:
    return {
        suffix: stat.S_IMODE(os.stat(str(database) + suffix).st_mode)
        for suffix in ("", "-wal", "-shm", "-lock")
        if os.path.exists(str(database) + suffix)
    }


@pytest.mark.slow
def test_database_files_are_owner_only_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)  # the children inherit it: anything not created 0600 on purpose shows
    try:
        web = start_web(tmp_path / "web.db")
        try:
            assert post_signed(web.port, b'{"event":"meeting.started","payload":{}}')[0] == 200
            web_modes = file_modes(tmp_path / "web.db")
        finally:
            web.stop()
        worker = start_procfile(procfile_line("worker"), process_env(tmp_path / "worker.db"))
        try:
            deadline = time.monotonic() + 20
            while (
                "worker started" not in worker.log() and time.monotonic() < deadline and worker.process.poll() is None
            ):
                time.sleep(0.1)
            time.sleep(1.5)  # a normalize run or two
            worker_modes = file_modes(tmp_path / "worker.db")
        finally:
            worker.stop()
    finally:
        os.umask(old)
    assert set(web_modes) == {"", "-wal", "-shm", "-lock"}, web_modes
    assert web_modes == dict.fromkeys(web_modes, 0o600), {k: oct(v) for k, v in web_modes.items()}
    assert "" in worker_modes, worker_modes  # (its WAL may be checkpointed away between jobs)
    assert worker_modes == dict.fromkeys(worker_modes, 0o600), {k: oct(v) for k, v in worker_modes.items()}
