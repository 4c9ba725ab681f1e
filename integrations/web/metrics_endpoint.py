"""GET /metrics: Prometheus text format, summed over every web process and the worker (issue 18).

Counters and histograms come from the multiprocess directory (integrations/ops/multiprocess.py)
when the app runs under gunicorn, else from this process; state gauges are read from the
database at scrape time. With METRICS_TOKEN set, the scrape needs `Authorization: Bearer`.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from integrations.ops.collector import StateCollector
from integrations.ops.multiprocess import is_multiprocess
from integrations.web.dbconn import get_db, settings
from integrations.web.webhooks import error

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """The metrics in Prometheus's text format."""
    config = settings()
    if config.metrics_token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {config.metrics_token}".encode()):
            response = error(401, "unauthorized", "GET /metrics needs Authorization: Bearer METRICS_TOKEN")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    state = CollectorRegistry(auto_describe=False)
    state.register(
        StateCollector(
            get_db,
            daily_limit=config.zoom_daily_api_limit,
            now=lambda: datetime.now(UTC),
        )
    )
    if is_multiprocess():
        events = CollectorRegistry()
        MultiProcessCollector(events, path=config.metrics_dir)
    else:
        events = REGISTRY
    body = generate_latest(events) + generate_latest(state)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)
