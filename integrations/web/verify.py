"""Public certificate verification, no sign-in: /verify/CODE (page), /api/certificates/CODE (JSON), /verify/key.

Only what the certificate prints leaves here (name, event, date, minutes, score, number,
revocation): never the email, person key or rules. Lookups are rate-limited per client IP
with an in-process token bucket, so with several gunicorn workers each process has its
own bucket (a client gets up to WEB_CONCURRENCY times the rate); codes are unguessable
anyway (Ed25519 signatures), the limit only keeps the endpoint from being a cheap oracle.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Blueprint, Response, current_app, render_template, request

from integrations.certificates.issue import check_code
from integrations.certificates.keys import KeyFileError, read_key
from integrations.certificates.signing import InvalidCode, public_key_pem
from integrations.web.dbconn import get_db, settings
from integrations.web.webhooks import json_response
from store.db import DatabaseUnavailable

log = logging.getLogger(__name__)
bp = Blueprint(
    "verify", __name__, template_folder="templates", static_folder="static/verify", static_url_path="/verify/static"
)

_HEADERS = {
    # The page has no script at all; styles come from our own static file.
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",  # the code is in the URL
    "Cache-Control": "no-cache",  # a revocation shows at once
    "X-Content-Type-Options": "nosniff",
}


class TokenBuckets:
    """Per-key token buckets: `per_minute` tokens a minute, bursts up to the same number."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Take a token for `key` if it has one."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()  # a flood of addresses: forget them all rather than grow
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                return False
            self._buckets[key] = (tokens - 1, now)
            return True


@bp.record_once
def _make_limiter(state) -> None:
    app = state.app
    clock = app.config.get("CERT_VERIFY_CLOCK", time.monotonic)
    app.extensions["cert_verify_limiter"] = TokenBuckets(app.config["SETTINGS"].cert_verify_per_minute, clock)


@lru_cache(maxsize=4)
def _key(path: str | None, mtime: float) -> Ed25519PrivateKey:
    return read_key(path)


def signing_key() -> Ed25519PrivateKey:
    """The configured key, read once per process (again if the file changes)."""
    path = settings().cert_signing_key_file
    try:
        mtime = os.stat(path).st_mtime if path else 0.0
    except OSError:
        mtime = 0.0
    return _key(path, mtime)


def _limited(html: bool) -> Response | None:
    limiter: TokenBuckets = current_app.extensions["cert_verify_limiter"]
    if limiter.allow(request.remote_addr or "unknown"):
        return None
    if html:  # the page a QR code opens: a person reads this, not a program
        response = Response(render_template("verify/limited.html"), status=429, mimetype="text/html")
    else:
        body = {"error": "rate_limited", "message": "too many certificate lookups, try again later"}
        response = json_response(body, 429)
    response.headers["Retry-After"] = "60"
    return response


@bp.after_request
def _with_headers(response: Response) -> Response:
    response.headers.update(_HEADERS)
    return response


def _unavailable(e: Exception) -> Response:
    log.error("certificate verification unavailable: %s", e)
    return json_response({"error": "unavailable", "message": "certificate verification is not available"}, 503)


def _look_up(code: str, answer: Callable[[int, dict[str, Any]], Response], *, html: bool = False) -> Response:
    """Rate-limit the client, check the code, and `answer(status, public dict)`: 404 when not genuine."""
    limited = _limited(html)
    if limited:
        return limited
    try:
        verdict = check_code(get_db(), code, signing_key().public_key())
    except InvalidCode:
        return answer(404, {"valid": False})
    except (KeyFileError, DatabaseUnavailable) as e:
        return _unavailable(e)
    return answer(200, verdict.public())


@bp.get("/verify/key")
def public_key() -> Response:
    """The public key that verifies every certificate code, PEM."""
    try:
        pem = public_key_pem(signing_key())
    except KeyFileError as e:
        return _unavailable(e)
    return Response(pem, mimetype="application/x-pem-file")


@bp.get("/api/certificates/<code>")
def certificate_json(code: str) -> Response:
    """{"valid", "revoked", "name", "event", "date", "attended_minutes", "score", ...}; 404 when not genuine."""
    return _look_up(code, lambda status, body: json_response(body, status))


@bp.get("/verify/<code>")
def certificate_page(code: str) -> Response:
    """The verification page a certificate's QR code opens."""

    def page(status: int, body: dict[str, Any]) -> Response:
        html = render_template("verify/page.html", certificate=body, found=status == 200)
        return Response(html, status=status, mimetype="text/html")

    return _look_up(code, page, html=True)
