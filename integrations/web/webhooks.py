"""POST /webhooks/zoom: verify, store durably, then answer. Normalization happens later.

A 2xx leaves only once the delivery is on disk; our own trouble is a 503 (Zoom retries
5xx, never 4xx). `WebhookEndpoint` answers this POST as plain WSGI in front of Flask, the
hot path of a live webinar (issue 6); Flask answers everything else."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from flask import Blueprint, Response

from integrations.config import Config
from integrations.ingest.webhook_path import WEBHOOK_PATH, after_response, store_webhook
from integrations.ops.metrics import count_delivery, metrics, safely
from integrations.zoom.signature import ZoomSignatureError, is_stale, url_validation_response, verify_signature
from integrations.zoom.webhooks import URL_VALIDATION, ZoomPayloadError, event_name, parse_json, url_validation_token
from store.db import DatabaseUnavailable
from store.evidence import Delivery

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

PATH = WEBHOOK_PATH
_STORED = b'{"status":"stored"}'
_REASONS = {200: "200 OK", 401: "401 UNAUTHORIZED", 413: "413 REQUEST ENTITY TOO LARGE", 503: "503 SERVICE UNAVAILABLE"}
_URL_VALIDATION_BYTES = URL_VALIDATION.encode()
_TOO_LARGE = {"error": "Request Entity Too Large", "message": "The data value transmitted exceeds the capacity limit."}


class ThrottledLog:
    """A warning logged at most once per interval, then with how many were left out.

    Anyone can POST unsigned requests to the public webhook URL: one line per request
    filled the log at hundreds of KB/s (issue 14).
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0, clock=time.monotonic):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warning(self, message: str, *args) -> None:
        """Log now if the interval has passed, else count it."""
        with self._lock:
            now = self.clock()
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + self.interval
        if suppressed:
            message += f" ({suppressed} more like it in the last {self.interval:g}s not logged)"
        self.logger.warning(message, *args)


rejected_log = ThrottledLog(log)


def json_response(body: dict | bytes, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(data, status=status, mimetype="application/json")


def error(status: int, code: str, message: str) -> Response:
    return json_response({"error": code, "message": message}, status)


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


def _count(body: bytes, result: str) -> None:
    # stored and duplicate are counted when the spool is imported (integrations/ingest/spool.py):
    # only then is it known whether the body was new.
    count_delivery(body, result)


def receive(
    body: bytes, header: Callable[[str], str | None], config: Config, remote_addr: str | None
) -> tuple[int, bytes]:
    """Verify and store one delivery; the status and JSON body to answer with."""
    secret = config.webhook_secret_token
    if not secret:
        # Fail closed: never accept unsigned events; 503 so Zoom retries once configured.
        log.error("ZOOM_WEBHOOK_SECRET_TOKEN is not set: refusing webhook with 503")
        _count(body, "error")
        return 503, _error_body("not_configured", "webhook secret token is not configured")
    timestamp = header("x-zm-request-timestamp")
    signature = header("x-zm-signature")
    try:
        verify_signature(body, timestamp=timestamp, signature=signature, secret=secret)
    except ZoomSignatureError as e:
        rejected_log.warning("rejected webhook from %s: %s", remote_addr, e)
        _count(body, "rejected")
        return 401, _error_body("invalid_signature", str(e))

    validation = _url_validation(body, secret)
    stale = is_stale(timestamp or "", now=time.time(), tolerance_seconds=config.webhook_tolerance_seconds)
    delivery = Delivery(
        body,
        timestamp,
        signature,
        request_id=header("x-zm-request-id"),
        tracking_id=header("x-zm-trackingid"),
        stale_timestamp=stale,
    )
    try:
        store_webhook(delivery, config)
    except DatabaseUnavailable as e:
        if validation is not None:
            # A challenge is not attendance evidence; failing it would get the subscription disabled.
            log.error("could not store url_validation delivery (%s); answering the challenge anyway", e)
            return 200, json.dumps(validation).encode()
        log.error("cannot store webhook, answering 503 so Zoom retries: %s", e)
        _count(body, "error")
        return 503, _error_body("storage_unavailable", "delivery could not be stored; retry later")
    if stale:
        log.warning(
            "stored webhook %s with a stale timestamp %r", header("x-zm-request-id") or "(no request id)", timestamp
        )
    if validation is not None:
        return 200, json.dumps(validation).encode()
    return 200, _STORED


# The route without a view: WebhookEndpoint answers every POST before Flask sees it, and the
# rule lets Flask answer the path's other methods (405 with Allow: POST, and OPTIONS).
bp.add_url_rule(PATH, endpoint="zoom_webhook", methods=["POST"])


class WebhookEndpoint:
    """WSGI middleware: POST /webhooks/zoom without Flask; every other request to `app`."""

    def __init__(self, app: Callable, config: Config, max_body_bytes: int):
        self.app = app
        self.config = config
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        started = time.perf_counter()
        body = self._read_body(environ)
        if body is None:
            status, answer = 413, json.dumps(_TOO_LARGE).encode()
            count_delivery(b"", "rejected")
        else:
            status, answer = receive(body, _environ_header(environ), self.config, environ.get("REMOTE_ADDR"))
        start_response(
            _REASONS.get(status) or f"{status} ERROR",
            [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
        )
        took = time.perf_counter() - started
        safely(lambda: _latency(status).observe(took))
        return _Answer(answer, self.config) if status == 200 else [answer]

    def _read_body(self, environ: dict) -> bytes | None:
        """The request body, or None when it is over the limit (as Flask's MAX_CONTENT_LENGTH)."""
        stream = environ["wsgi.input"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            length = -1
        if length > self.max_body_bytes:
            return None
        if length >= 0:
            return stream.read(length) if length else b""
        if not environ.get("wsgi.input_terminated"):
            return b""  # no length and a stream that may not end: read nothing (werkzeug's rule)
        body = stream.read(self.max_body_bytes + 1)
        return None if len(body) > self.max_body_bytes else body


_latencies: dict[int, object] = {}


def _latency(status: int):
    """The histogram child of this endpoint and status (labels() looked up once per status)."""
    child = _latencies.get(status)
    if child is None:
        child = _latencies[status] = metrics().request_seconds.labels(PATH, "POST", str(status))
    return child


class _Answer:
    """The response body; its close(), which the server calls once the answer is sent,
    imports the spooled delivery into raw_records (PEP 3333: close() after the response)."""

    __slots__ = ("body", "config")

    def __init__(self, body: bytes, config: Config):
        self.body = body
        self.config = config

    def __iter__(self):
        yield self.body

    def close(self) -> None:
        after_response(self.config)


def _environ_header(environ: dict) -> Callable[[str], str | None]:
    def header(name: str) -> str | None:
        return environ.get("HTTP_" + name.upper().replace("-", "_"))

    return header


def _url_validation(body: bytes, secret: str) -> dict | None:
    """The challenge answer when `body` is an endpoint.url_validation, else None."""
    if _URL_VALIDATION_BYTES not in body:
        return None  # skip JSON parsing on the hot path: every other event is parsed later
    try:
        data = parse_json(body)
        if event_name(data) != URL_VALIDATION:
            return None
        return url_validation_response(url_validation_token(data), secret=secret)
    except ZoomPayloadError:
        return None
