"""Slow clients (issue 14): while connections trickle headers and bodies, the Procfile web
process still answers signed webhooks and /healthz, and cuts the slow clients off; gunicorn's
own error answers are JSON. The latency figures live in bench/bench_slow_clients.py."""

from __future__ import annotations

import json
import socket
import time

import pytest

from bench.slowloris import SlowClients
from integrations.web import server
from tests.fault_support import get, participant_body, post_signed, request, start_web


@pytest.fixture
def web(tmp_path):
    proc = start_web(tmp_path / "slow.db", WEB_CONCURRENCY="1")
    yield proc
    proc.stop()


def test_webhooks_are_answered_while_slow_clients_hold_more_connections_than_threads(web):
    # 60 slow connections against one worker of 16 threads: gthread alone answered nothing.
    with SlowClients(web.port, headers=45, bodies=15, interval=0.3, lifetime=30) as slow:
        time.sleep(1.5)
        assert slow.opened == 60
        answered = []
        for n in range(20):
            status, _ = post_signed(web.port, participant_body(n, run="slow"), timeout=5)
            health, _ = get(web.port, "/healthz", timeout=5)
            answered.append((status, health))
        assert answered == [(200, 200)] * 20


def test_slow_clients_are_cut_off_after_the_read_deadline(web, monkeypatch):
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=server.READ_DEADLINE_SECONDS + 10)
    started = time.monotonic()
    sock.sendall(b"POST /webhooks/zoom HTTP/1.1\r\nHost: x\r\n")
    try:
        while True:
            sock.sendall(b"X")  # never finishes its headers
            sock.settimeout(0.5)
            try:
                if sock.recv(100) == b"":
                    break
            except TimeoutError:
                pass
            assert time.monotonic() - started < server.READ_DEADLINE_SECONDS + 5, "never cut off"
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    assert time.monotonic() - started >= server.READ_DEADLINE_SECONDS - 1


@pytest.mark.parametrize(
    "raw, status",
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n", 431),
        (b"NOT A REQUEST\r\n\r\n", 400),
    ],
    ids=["414", "431", "400"],
)
def test_gunicorns_own_errors_are_json(web, raw, status):
    with socket.create_connection(("127.0.0.1", web.port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode(), head
    assert b"Content-Type: application/json" in head
    assert json.loads(body)["error"]


def test_no_html_slash_redirects(web):
    for path in ("/healthz/", "//healthz", "/api/meetings/", "/nowhere/"):
        status, body = request(web.port, "GET", path)
        assert status in (200, 401, 404), (path, status)  # werkzeug answered 308 in HTML
        assert json.loads(body), path
