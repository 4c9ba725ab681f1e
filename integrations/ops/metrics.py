"""The Prometheus metrics the service counts as things happen (issue 18), in one place.

Events are counters and histograms here; state (spool depth, silence per live meeting, disk)
is read from the database and the filesystem at scrape time (integrations/ops/collector.py).
Each metric is made on first use (`metrics()`), after `enable_multiprocess` has chosen where
its values live, never when a module is imported.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from integrations.zoom.paths import API_PATHS

# Zoom event names that become label values; anything else is "other", so a flood of
# made-up names (rejected deliveries are unverified) cannot grow the label set.
KNOWN_EVENTS = frozenset(
    [f"{kind}.{name}" for kind in ("meeting", "webinar") for name in ("started", "ended")]
    + [
        f"{kind}.participant_{name}"
        for kind in ("meeting", "webinar")
        for name in ("joined", "left", "bind", "role_changed")
    ]
    + [
        f"meeting.participant_{name}"
        for name in (
            "joined_waiting_room",
            "left_waiting_room",
            "put_in_waiting_room",
            "admitted",
            "joined_breakout_room",
            "left_breakout_room",
        )
    ]
    + ["endpoint.url_validation"]
)
log = logging.getLogger(__name__)
_EVENT = re.compile(rb'"event"\s*:\s*"([a-z_.]{1,64})"')
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REFRESH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def event_label(body: bytes) -> str:
    """The delivery's event name as a label value, without parsing the JSON."""
    match = _EVENT.search(body, 0, 4096)
    name = match.group(1).decode() if match else ""
    return name if name in KNOWN_EVENTS else "other"


@dataclass(frozen=True)
class Metrics:
    """Every counter and histogram of the service."""

    deliveries: Counter
    request_seconds: Histogram
    zoom_api_requests: Counter
    refresh_seconds: Histogram
    alert_notifications: Counter


_made: list[Metrics] = []
_making = threading.Lock()


def metrics() -> Metrics:
    """The metrics, made on first use (after multiprocess mode is on, when it is)."""
    if not _made:
        # Once per process, under a lock: the first burst of webhooks reaches here from many
        # threads at once, and registering a metric twice raises (a 500 to Zoom).
        with _making:
            if not _made:
                _made.append(_new_metrics())
    return _made[0]


def _new_metrics() -> Metrics:
    return Metrics(
        deliveries=Counter(
            "zoom_webhook_deliveries",
            "Webhook deliveries by event and result: stored (new in raw_records), duplicate "
            "(a body already stored), rejected (bad signature, too large), error (answered 503)",
            ["event", "result"],
        ),
        request_seconds=Histogram(
            "http_request_duration_seconds",
            "Time from request to answer in the web process, by route, method and status",
            ["handler", "method", "status"],
            buckets=LATENCY_BUCKETS,
        ),
        zoom_api_requests=Counter(
            "zoom_api_requests",
            "Calls to Zoom's REST API by endpoint and HTTP status (error: no answer)",
            ["endpoint", "status"],
        ),
        refresh_seconds=Histogram(
            "attendance_derived_refresh_duration_seconds",
            "Time to recompute one instance's derived attendance tables",
            buckets=REFRESH_BUCKETS,
        ),
        alert_notifications=Counter(
            "attendance_alert_notifications",
            "Alert notices POSTed to ALERT_WEBHOOK_URL, by kind (raised, cleared) and outcome",
            ["kind", "outcome"],
        ),
    )


_warned: list[bool] = []


def safely(update: Callable[[], None]) -> None:
    """Run a metric update; a failure (the metrics file cannot grow) never fails the caller."""
    # A delivery must never be refused, nor an import undone, because a count could not
    # be written: the count is lost, once logged.
    try:
        update()
    except (OSError, ValueError) as e:
        if not _warned:
            _warned.append(True)
            log.warning("a metric could not be recorded (further failures not logged): %s", e)


def count_delivery(body: bytes, result: str) -> None:
    """Count a delivery answered without storing it: `rejected` or `error`."""
    safely(lambda: metrics().deliveries.labels(event_label(body), result).inc())


def count_imported(events: list[str], created: list[bool]) -> None:
    """Count deliveries the spool import stored (new) or found already stored."""
    safely(lambda: _count_imported(events, created))


def _count_imported(events: list[str], created: list[bool]) -> None:
    tally: dict[tuple[str, str], int] = {}
    for event, new in zip(events, created, strict=True):
        key = (event, "stored" if new else "duplicate")
        tally[key] = tally.get(key, 0) + 1
    counter = metrics().deliveries
    for (event, result), n in tally.items():
        counter.labels(event, result).inc(n)


# The endpoint label values docs/monitoring.md lists; any other path is "other".
API_LABELS = ("participants", "polls", "instances", "absentees", "registrants")
_API_PATHS = tuple((name, re.compile(pattern)) for name, pattern in API_PATHS if name in API_LABELS)


def api_endpoint(url: str) -> str:
    """A Zoom API URL's endpoint name as a label value (IDs left out)."""
    path = url.split("?", 1)[0]
    if path.endswith("/oauth/token"):
        return "token"
    for name, pattern in _API_PATHS:
        if pattern.search(path):
            return name
    return "other"


def count_api_call(url: str, status: int | None) -> None:
    """Count one call to Zoom's API (status None: no answer, a timeout or a refused connection)."""
    safely(lambda: metrics().zoom_api_requests.labels(api_endpoint(url), str(status) if status else "error").inc())


def prime() -> None:
    """Make a series of each kind now, so this process's metric files exist before the disk
    can fill (their pages are then allocated by `multiprocess.preallocate`)."""
    made = metrics()
    for result in ("rejected", "error"):
        made.deliveries.labels("other", result)
    made.zoom_api_requests.labels("token", "200")
