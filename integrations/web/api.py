"""The read API under /api: bearer token required, off when API_TOKEN is not set."""

from __future__ import annotations

import hmac
import logging
import math
from urllib.parse import unquote

from flask import Blueprint, Response, request
from werkzeug.routing import PathConverter

from integrations.funnel.matching import STAGES
from integrations.funnel.stages import PERSON_OUTPUT, stored_threshold
from integrations.funnel.stages import funnel as funnel_of
from integrations.reads.attendance import (
    MEETING_FIELDS,
    SUMMARY_FIELDS,
    TIMELINE_FIELDS,
    attendee_fields,
    current_instance,
    current_meetings,
    json_chunks,
    now_seconds,
    summary_row,
)
from integrations.reads.formats import csv_lines
from integrations.web.dbconn import get_db, settings
from integrations.web.webhooks import error, json_response
from store import attendance_queries as queries
from store.attendance_queries import BadQuery
from store.db import DatabaseUnavailable

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


# -- attendance (issue 4): the same answers as the CLI's attendance commands ---------------


class _MeetingConverter(PathConverter):
    """A numeric id or an instance UUID, which may begin with `/` or hold `//` once decoded."""

    regex = ".+?"
    part_isolating = False  # werkzeug would infer True: the regex has no `/` in it


@bp.record_once
def _register_meeting_converter(state) -> None:
    # Registered before the routes below are added: they are deferred in this order.
    state.app.url_map.converters["meeting"] = _MeetingConverter


def _meeting_argument(raw: str) -> str:
    # The server decoded the path once; a client that double-encoded (as Zoom's own API
    # wants for such UUIDs) left `%2F` behind. UUIDs never contain `%` themselves.
    return unquote(raw) if "%" in raw else raw


class BadParameter(BadQuery):
    """A query parameter the API cannot use; the 400 answer names it."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


@bp.errorhandler(BadParameter)
def bad_parameter(e: BadParameter) -> Response:
    """400 JSON naming the parameter."""
    return json_response({"error": "bad_request", "parameter": e.parameter, "message": str(e)}, 400)


@bp.errorhandler(queries.UnknownMeeting)
def unknown_meeting(e: queries.UnknownMeeting) -> Response:
    """404: no such meeting or instance stored."""
    return error(404, "unknown_meeting", str(e))


@bp.errorhandler(BadQuery)
def bad_query(e: BadQuery) -> Response:
    """400: the query asks for something the data cannot answer (too many points, no pass percent)."""
    return error(400, "bad_request", str(e))


@bp.errorhandler(DatabaseUnavailable)
def busy(e: DatabaseUnavailable) -> Response:
    """503: retry later (Zoom-style clients and dashboards poll again)."""
    return error(503, "busy", f"attendance is being recomputed or the database is busy; retry: {e}")


# (kind, lowest, highest) of each numeric query parameter.
_NUMBERS = {
    "min_minutes": (float, 0, math.inf),
    "min_percent": (float, 0, 100),
    "pass_percent": (float, 0, 100),
    "step": (int, 1, 10**9),
}


def _number(name: str):
    value = request.args.get(name)
    if value is None or value == "":
        return None
    kind, lowest, highest = _NUMBERS[name]
    try:
        number = kind(value)
    except ValueError:
        raise BadParameter(name, f"{name} must be a number, got {value[:40]!r}") from None
    if not math.isfinite(number) or not lowest <= number <= highest:
        upper = "" if math.isinf(highest) else f" and at most {highest:g}"
        raise BadParameter(name, f"{name} must be a finite number of at least {lowest:g}{upper}, got {value[:40]!r}")
    return number


_TRUE = ("1", "true", "yes")
_FALSE = ("", "0", "false", "no")


def _flag(name: str) -> bool:
    value = request.args.get(name, "")
    if value.lower() not in _TRUE + _FALSE:
        raise BadParameter(name, f"{name} must be 1 or 0 (true/false, yes/no), got {value[:40]!r}")
    return value.lower() in _TRUE


def _answer(result: dict, *, list_key: str | None, csv_rows, fields, filename: str) -> Response:
    fmt = request.args.get("format", "json")
    if fmt == "csv":
        response = Response(csv_lines(csv_rows, fields), mimetype="text/csv")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}.csv"'
        return response
    if fmt != "json":
        raise BadParameter("format", f"format must be json or csv, got {fmt[:40]!r}")
    return Response(json_chunks(result, list_key), mimetype="application/json")


API_REFRESH_LOCK_TIMEOUT = 10.0  # under gunicorn's 30 s worker timeout
# A dashboard polling a live 20,000-person webinar takes the worker's refresh (seconds
# old, `computed_at` in the answer) instead of recomputing it on every request; open
# sessions still run until now. Ended instances are always brought up to date first.
API_LIVE_MAX_AGE = 10.0


@bp.get("/meetings")
def meetings() -> Response:
    """Every stored instance with its window and evidence counts."""
    rows = current_meetings(get_db(), live_max_age=API_LIVE_MAX_AGE, lock_timeout=API_REFRESH_LOCK_TIMEOUT)
    return _answer({"meetings": rows}, list_key="meetings", csv_rows=rows, fields=MEETING_FIELDS, filename="meetings")


@bp.get("/meetings/<meeting:meeting>/<any(attendance, summary, timeline):view>", merge_slashes=False)
def meeting_view(meeting: str, view: str) -> Response:
    """Attendance, summary or timeline of a meeting (latest instance) or an instance UUID."""
    db = get_db()
    uuid = current_instance(
        db,
        _meeting_argument(meeting),
        request.args.get("instance"),
        live_max_age=API_LIVE_MAX_AGE,
        lock_timeout=API_REFRESH_LOCK_TIMEOUT,
    )
    now = now_seconds()
    if view == "timeline":
        step = _number("step")
        try:
            result = queries.timeline(db, uuid, now=now, step=60 if step is None else step)
        except BadQuery as e:  # too many points for this step
            raise BadParameter("step", str(e)) from None
        return _answer(
            result, list_key="points", csv_rows=result["points"], fields=TIMELINE_FIELDS, filename="timeline"
        )
    min_minutes, min_percent = _number("min_minutes"), _number("min_percent")
    if min_minutes is not None and min_percent is not None:
        raise BadParameter("min_percent", "give either min_minutes or min_percent, not both")
    threshold = queries.Threshold(min_minutes, min_percent)
    # The meeting's stored rules (worker.py rules) unless the query gives a minimum.
    threshold = threshold if threshold.given else stored_threshold(db, uuid)
    if view == "summary":
        result = queries.summary(db, uuid, now=now, threshold=threshold)
        return _answer(result, list_key=None, csv_rows=[summary_row(result)], fields=SUMMARY_FIELDS, filename="summary")
    include_absent = _flag("include_absent")
    result = queries.attendance(db, uuid, now=now, threshold=threshold, include_absent=include_absent)
    return _answer(
        result,
        list_key="attendees",
        csv_rows=result["attendees"],
        fields=attendee_fields(result),
        filename="attendance",
    )


@bp.get("/meetings/<meeting:meeting>/funnel", merge_slashes=False)
def meeting_funnel(meeting: str) -> Response:
    """The funnel of a meeting: counts per stage; `stage` or `dropped_at` lists the people."""
    stage, dropped = request.args.get("stage"), request.args.get("dropped_at")
    for name, value in (("stage", stage), ("dropped_at", dropped)):
        if value is not None and value not in STAGES:
            raise BadParameter(name, f"{name} must be one of {', '.join(STAGES)}, got {value[:40]!r}")
    if stage and dropped:
        raise BadParameter("dropped_at", "give stage or dropped_at, not both")
    overrides = {name: _number(name) for name in ("min_minutes", "min_percent", "pass_percent")}
    result = funnel_of(
        get_db(),
        _meeting_argument(meeting),
        instance=request.args.get("instance"),
        overrides=overrides,
        stage=stage,
        dropped=dropped,
    )
    listing = "people" in result
    return _answer(
        result,
        list_key="people" if listing else None,
        csv_rows=result["people"] if listing else result["stages"],
        fields=PERSON_OUTPUT if listing else ("stage", "count"),
        filename="funnel",
    )
