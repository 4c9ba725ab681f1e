"""The ceiling for bench_ingest.py: a bare Flask endpoint that reads the body and answers.

Served by the Procfile's own gunicorn command line (only the app spec differs), so the
ratio it gives measures our request path, not gunicorn settings.
"""

from __future__ import annotations

from flask import Flask, Response, request

_OK = b'{"status":"ok"}'


def create_app() -> Flask:
    """A Flask app with one POST /webhooks/zoom that reads the body and answers 200."""
    app = Flask(__name__)

    @app.post("/webhooks/zoom")
    def zoom_webhook() -> Response:
        request.get_data(cache=False)
        return Response(_OK, status=200, mimetype="application/json")

    return app
