"""The Flask application: webhook receiver, health check, read API and the organizer dashboard."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from integrations.config import Config, load_config
from integrations.ops.logs import JsonFormatter
from integrations.ops.metrics import metrics, safely
from integrations.web import api, dashboard, health, metrics_endpoint, raw_events, verify, webhooks
from integrations.web.dashboard.auth import configure_sessions
from integrations.web.dashboard.login_limit import LoginLimiter
from store.db import open_db
from store.migrations import migrate

MAX_BODY_BYTES = 1024 * 1024


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


def configure_logging(level: str, log_format: str = "text") -> None:
    """Log to stderr in one line per record, once per process: text, or JSON with LOG_FORMAT=json."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    if log_format == "json":
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, JsonFormatter):
                handler.setFormatter(JsonFormatter())
    root.setLevel(level)
    # APScheduler logs every run of the one-second normalize job at INFO.
    logging.getLogger("apscheduler").setLevel(max(logging.WARNING, root.level))


def create_app(config: Config | None = None) -> Flask:
    """Application factory: `gunicorn 'integrations.web:create_app()'`."""
    config = config or load_config()
    configure_logging(config.log_level, config.log_format)
    metrics()  # made before the first request: requests then only count
    app = Flask(__name__)
    # No 308 redirects for a trailing or doubled slash: werkzeug answers those in HTML (issue 14).
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.config["SETTINGS"] = config
    # Zoom's events are a few KB; larger bodies are refused before they are read.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    db = open_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
    migrate(db)
    db.close()

    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(raw_events.bp)  # GET /api/raw-events (issue 5)
    app.register_blueprint(verify.bp)  # public certificate verification (issue 17)
    configure_sessions(app, config.secret_key)
    app.extensions["login_limiter"] = LoginLimiter()  # failed dashboard sign-ins per client, per process
    app.register_blueprint(dashboard.bp)  # the organizer dashboard at / (issue 15)
    app.register_blueprint(metrics_endpoint.bp)  # GET /metrics (issue 18)
    if config.trust_proxy_headers:
        # One proxy in front sets X-Forwarded-Proto/-For: request.is_secure then tells HTTPS.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    # POST /webhooks/zoom skips Flask's request machinery: the ingest hot path (issue 6).
    app.wsgi_app = webhooks.WebhookEndpoint(app.wsgi_app, config, MAX_BODY_BYTES)  # type: ignore[method-assign]

    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def observe_latency(response):
        """Time each answer for http_request_duration_seconds (issue 18)."""
        started = g.pop("request_started", None)
        if started is not None:
            handler = request.url_rule.rule if request.url_rule is not None else "unmatched"
            took, labels = time.perf_counter() - started, (handler, request.method, str(response.status_code))
            safely(lambda: metrics().request_seconds.labels(*labels).observe(took))
        return response

    @app.errorhandler(HTTPException)
    def json_error(error: HTTPException):
        """Every error is JSON with a message."""
        response = jsonify(error=error.name, message=error.description)
        response.status_code = error.code or 500
        if error.code == 405 and error.get_headers():
            response.headers.update({k: v for k, v in error.get_headers() if k.lower() == "allow"})
        return response

    return app
