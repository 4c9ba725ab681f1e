"""Zoom webhook signatures: sign, verify and answer URL validation. Pure: no I/O.

Zoom signs `v0:{x-zm-request-timestamp}:{raw body}` with HMAC-SHA256 of the app's secret
token (../shared/zoom/NOTES.md, "Signature"). We hash the raw bytes: re-serialized JSON
does not match.
"""

from __future__ import annotations

import hashlib
import hmac


class ZoomSignatureError(Exception):
    "The webhook signature is missing or does not match"


def sign(body: bytes, *, timestamp: str | int, secret: str) -> str:
    """Return the `x-zm-signature` header value Zoom would send for `body`."""
    message = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, *, timestamp: str | None, signature: str | None, secret: str) -> None:
    """Raise ZoomSignatureError unless `signature` is Zoom's signature of `body` at `timestamp`."""
    if not timestamp:
        raise ZoomSignatureError("missing x-zm-request-timestamp header")
    if not signature:
        raise ZoomSignatureError("missing x-zm-signature header")
    expected = sign(body, timestamp=timestamp, secret=secret)
    # Constant-time compare (Zoom's samples use ===, which leaks timing).
    if not hmac.compare_digest(expected.encode(), signature.strip().encode("utf-8", "replace")):
        raise ZoomSignatureError("x-zm-signature does not match the body")


def is_stale(timestamp: str, *, now: float, tolerance_seconds: int) -> bool:
    """True when the signed timestamp is outside the tolerance either way, or not a number."""
    try:
        sent = int(timestamp)
    except ValueError:
        return True
    return abs(now - sent) > tolerance_seconds


def encrypted_token(plain_token: str, *, secret: str) -> str:
    """Return the `encryptedToken` Zoom expects for an `endpoint.url_validation` challenge."""
    return hmac.new(secret.encode(), plain_token.encode(), hashlib.sha256).hexdigest()


def url_validation_response(plain_token: str, *, secret: str) -> dict[str, str]:
    """Return the JSON body answering an `endpoint.url_validation` challenge."""
    return {"plainToken": plain_token, "encryptedToken": encrypted_token(plain_token, secret=secret)}
