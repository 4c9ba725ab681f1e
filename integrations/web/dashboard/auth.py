"""Dashboard sign-in: one password (the API_TOKEN), a signed session cookie, CSRF tokens.

The session cookie is Flask's signed cookie (SECRET_KEY): HttpOnly, SameSite=Lax, and
Secure whenever the request came over HTTPS (`request.is_secure`, which honours
X-Forwarded-Proto only when TRUST_PROXY_HEADERS puts ProxyFix in front). A signed-in
session holds a digest of the API_TOKEN it was opened with, so changing the token signs
everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from flask import Flask, Response, request, session
from flask.sessions import SecureCookieSessionInterface

from integrations.web.dbconn import settings

CSRF_FIELD = "csrf_token"


class DashboardSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure exactly when this request is HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def configure_sessions(app: Flask, secret_key: str | None) -> None:
    """Sign sessions with SECRET_KEY (none: the dashboard stays off, see `dashboard_off`)."""
    app.secret_key = secret_key
    app.session_interface = DashboardSessionInterface()
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="dashboard")


def dashboard_off() -> str | None:
    """Why the dashboard cannot serve (no SECRET_KEY or no API_TOKEN), or None."""
    config = settings()
    missing = [
        name for name, value in (("SECRET_KEY", config.secret_key), ("API_TOKEN", config.api_token)) if not value
    ]
    if missing:
        return "The dashboard is off: set " + " and ".join(missing) + " (see config.example.env)."
    return None


def _token_digest() -> str:
    """A digest of the API_TOKEN, kept in the session to tie it to the token it was opened with."""
    config = settings()
    return hmac.new((config.secret_key or "").encode(), (config.api_token or "").encode(), hashlib.sha256).hexdigest()


def password_matches(password: str) -> bool:
    """True when `password` is the API_TOKEN (constant-time compare)."""
    expected = settings().api_token or ""
    return bool(expected) and hmac.compare_digest(password.encode(), expected.encode())


def sign_in() -> None:
    """Start a fresh signed-in session (a new CSRF token: nothing carries over from before)."""
    session.clear()
    session["signed_in"] = _token_digest()
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def sign_out() -> None:
    """Forget the session."""
    session.clear()


def signed_in() -> bool:
    """True when the session was opened with the current API_TOKEN."""
    digest = session.get("signed_in")
    return isinstance(digest, str) and hmac.compare_digest(digest, _token_digest())


def csrf_token() -> str:
    """This session's CSRF token, created on first use (templates put it in every form)."""
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def csrf_ok() -> bool:
    """True when the posted form carries this session's CSRF token."""
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    return isinstance(expected, str) and hmac.compare_digest(given.encode(), expected.encode())


def safe_next(target: str | None) -> str | None:
    """A path on this site to go back to after signing in; anything else (another host) is dropped."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def security_headers(response: Response) -> Response:
    """A strict Content-Security-Policy and friends on every dashboard answer."""
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith("/dashboard/static/"):
        response.headers["Cache-Control"] = "no-store"  # attendance data and sessions stay off shared caches
    return response
