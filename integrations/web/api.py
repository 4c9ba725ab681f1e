"""The read API under /api: bearer token required, off when API_TOKEN is not set."""

from __future__ import annotations

import hmac
import logging
from flask import Blueprint, Response, request

from integrations.web.dbconn import settings
from integrations.web.webhooks import error

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def require_token() -> Response | None:
    """Refuse every /api request without the configured bearer token."""
    expected = settings().api_token
    if not expected:
        return error(503, "api_disabled", "the read API is off: set API_TOKEN to enable it")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    # Constant-time compare, so the token cannot be guessed byte by byte.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        return error(401, "unauthorized", "missing or wrong bearer token")
    return None

