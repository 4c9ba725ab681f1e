"""The organizer dashboard (issue 15): HTML pages and their JSON, behind a signed-in session.

Pages: `/login`, `/` (meetings), `/instance`, `/attendance` (+ `.csv`, `.jsonl`), `/person`,
`/raw/<id>.json`; the instance page's charts poll `/instance/data.json`. Templates extend
templates/base.html; scripts and styles are static files only (strict CSP, auth.py).
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/static",
)

from integrations.web.dashboard import views  # noqa: E402,F401  (registers the routes on bp)
