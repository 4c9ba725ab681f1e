"""POST /webhooks/zoom: verify, store durably, then answer. Normalization happens later.

Zoom retries only 5xx and timeouts, never a 4xx (../shared/zoom/NOTES.md, "Delivery"):
our own trouble is always a 503, and a 2xx leaves only once the delivery is on disk.
"""

from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, request

from integrations.web.dbconn import get_db, settings
from integrations.zoom.signature import ZoomSignatureError, is_stale, url_validation_response, verify_signature
from integrations.zoom.webhooks import URL_VALIDATION, ZoomPayloadError, event_name, parse_json, url_validation_token
from store.db import DatabaseUnavailable
from store.evidence import store_delivery

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)

_STORED = b'{"status":"stored"}'
_DUPLICATE = b'{"status":"duplicate"}'


def json_response(body: dict | bytes, status: int = 200) -> Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(data, status=status, mimetype="application/json")


def error(status: int, code: str, message: str) -> Response:
    return json_response({"error": code, "message": message}, status)


@bp.post("/webhooks/zoom")
def zoom_webhook() -> Response:
    """Receive one Zoom webhook delivery."""
    config = settings()
    secret = config.webhook_secret_token
    if not secret:
        # Fail closed: never accept unsigned events; 503 so Zoom retries once configured.
        log.error("ZOOM_WEBHOOK_SECRET_TOKEN is not set: refusing webhook with 503")
        return error(503, "not_configured", "webhook secret token is not configured")
    body = request.get_data(cache=False)
    timestamp = request.headers.get("x-zm-request-timestamp")
    signature = request.headers.get("x-zm-signature")
    try:
        verify_signature(body, timestamp=timestamp, signature=signature, secret=secret)
    except ZoomSignatureError as e:
        log.warning("rejected webhook from %s: %s", request.remote_addr, e)
        return error(401, "invalid_signature", str(e))

    validation = _url_validation(body, secret)
    stale = is_stale(timestamp or "", now=time.time(), tolerance_seconds=config.webhook_tolerance_seconds)
    try:
        stored = store_delivery(
            get_db(),
            body,
            timestamp=timestamp,
            signature=signature,
            request_id=request.headers.get("x-zm-request-id"),
            tracking_id=request.headers.get("x-zm-trackingid"),
            stale_timestamp=stale,
        )
    except DatabaseUnavailable as e:
        if validation is not None:
            # A challenge is not attendance evidence; failing it would get the subscription disabled.
            log.error("could not store url_validation delivery (%s); answering the challenge anyway", e)
            return json_response(validation)
        log.error("cannot store webhook, answering 503 so Zoom retries: %s", e)
        return error(503, "storage_unavailable", "delivery could not be stored; retry later")
    if stale:
        log.warning("stored webhook %s with a stale timestamp %r", stored.id, timestamp)
    if validation is not None:
        return json_response(validation)
    return json_response(_STORED if stored.created else _DUPLICATE)


def _url_validation(body: bytes, secret: str) -> dict | None:
    """The challenge answer when `body` is an endpoint.url_validation, else None."""
    if URL_VALIDATION.encode() not in body:
        return None  # skip JSON parsing on the hot path: every other event is parsed later
    try:
        data = parse_json(body)
        if event_name(data) != URL_VALIDATION:
            return None
        return url_validation_response(url_validation_token(data), secret=secret)
    except ZoomPayloadError:
        return None
