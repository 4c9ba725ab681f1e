"""Helpers for the dashboard tests: a configured app, signing in, reading `data-metric` numbers."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

from tests.conftest import API_TOKEN, make_config

SECRET_KEY = "test-secret-key-for-the-dashboard-sessions"
HOSTILE_NAMES = (
    "<script>window.hostile=1</script>",
    "=cmd|' /C calc'!A0",
    "\u202eevil\u202c name",
    "L" * 300,
)


def dashboard_config(tmp_path: Path, **overrides: str):
    """A test Config with SECRET_KEY set (the dashboard's session key)."""
    return make_config(tmp_path, **{"SECRET_KEY": SECRET_KEY, **overrides})


def csrf_from(html: str) -> str:
    """The CSRF token of the first form in `html`."""
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, password: str = API_TOKEN):
    """GET /login for its CSRF token, then POST the password; the POST's response."""
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"csrf_token": token, "password": password})


def metrics(html: str) -> dict[str, str]:
    """The text of every `data-metric` element."""
    return {name: unescape(value) for name, value in re.findall(r'data-metric="([^"]+)">([^<]*)<', html)}


def links(html: str, prefix: str) -> list[str]:
    """Every href starting with `prefix`, unescaped."""
    return [unescape(h) for h in re.findall(r'href="(' + re.escape(prefix) + r'[^"]*)"', html)]
