"""Dashboard routes: sign-in, meetings, instance, attendance table and downloads, person, raw records.

Every number comes from the read layer the CLI uses (integrations/reads/attendance.py,
store/attendance_queries.py), so the page and `worker.py summary` agree; the table pages
and the charts' data come from store/dashboard_queries.py, which pages in SQL.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, current_app, redirect, render_template, request, stream_with_context, url_for

from integrations.funnel.stages import funnel as funnel_of
from integrations.funnel.stages import stored_threshold
from integrations.reads.attendance import attendee_fields, current_instance, current_meetings, now_seconds
from integrations.reads.formats import csv_lines, hms
from integrations.web.dashboard import bp
from integrations.web.dashboard.auth import (
    csrf_ok,
    csrf_token,
    dashboard_off,
    password_matches,
    safe_next,
    security_headers,
    sign_in,
    sign_out,
    signed_in,
)
from integrations.web.dashboard.charts import headline, histogram, plain
from integrations.web.dashboard.login_limit import LoginLimiter
from integrations.web.dbconn import get_db
from store import dashboard_queries as dq
from store.attendance_queries import BadQuery, Threshold, UnknownMeeting, summary
from store.db import DatabaseUnavailable, Store

LIVE_MAX_AGE = 5.0  # seconds: a live instance refreshed this recently is shown as it is
REFRESH_LOCK_TIMEOUT = 10.0  # under gunicorn's 30 s worker timeout
CURVE_POINTS = 2000  # zoomable, and ~25 KB of JSON
POLL_SECONDS = 4  # the live page asks for new numbers this often (issue 15: at least every 5 s)
OPEN_ENDPOINTS = {"dashboard.login", "dashboard.static"}
STAGE_LABELS = {  # the funnel's stages (integrations/funnel/matching.STAGES), as the page names them
    "registered": "Registered (imported list)",
    "zoom_registered": "Registered in Zoom",
    "joined": "Joined",
    "attended": "Attended (met the minimum)",
    "answered": "Answered the quiz",
    "passed": "Passed",
}
THRESHOLD_ARGS = ("min_minutes", "min_percent")  # as `worker.py summary --min-minutes / --min-percent`

bp.after_request(security_headers)


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "csrf_token": csrf_token,
        "plain": plain,
        "hms": hms,
        "signed_in": signed_in,
        "threshold_args": threshold_args,
        "threshold_from_rules": lambda threshold: threshold.given and not _threshold().given,
    }


@bp.before_request
def require_session():
    """No SECRET_KEY or API_TOKEN: a page saying so; no session: to /login, never data."""
    if request.endpoint == "dashboard.static":
        return None
    reason = dashboard_off()
    if reason:
        return render_template("off.html", reason=reason), 503
    if request.endpoint not in OPEN_ENDPOINTS and not signed_in():
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    return None


@bp.errorhandler(BadQuery)
def _bad_query(e: BadQuery):
    return render_template("error.html", title="Cannot show that", message=str(e)), 400


@bp.errorhandler(UnknownMeeting)
def _unknown(e: UnknownMeeting):
    return render_template("error.html", title="Not found", message=str(e)), 404


@bp.errorhandler(DatabaseUnavailable)
def _busy(e: DatabaseUnavailable):
    return render_template("error.html", title="Busy", message=f"The database is busy; reload in a moment ({e})"), 503


@bp.errorhandler(404)
def _not_found(e):
    return render_template("error.html", title="Not found", message="Nothing here."), 404


# -- sign-in ---------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login():
    """One password field: the API_TOKEN."""
    target = safe_next(request.values.get("next")) or url_for("dashboard.meetings")
    if request.method == "GET":
        if signed_in():
            return redirect(target)
        return render_template("login.html", next=target, message=None)
    limiter: LoginLimiter = current_app.extensions["login_limiter"]
    client = request.remote_addr or ""  # the proxy's X-Forwarded-For only with TRUST_PROXY_HEADERS
    wait = limiter.retry_after(client)
    if wait:  # checked before the password: a limited client learns nothing more
        return _too_many_attempts(target, wait)
    if not csrf_ok():
        return render_template("login.html", next=target, message="The form expired: try again."), 400
    if not password_matches(request.form.get("password", "")):
        limiter.failed(client)
        return render_template("login.html", next=target, message="Wrong password."), 401
    sign_in()
    return redirect(target)


def _too_many_attempts(target: str, wait: int) -> Response:
    """HTTP 429: the sign-in page saying how many seconds until the next try."""
    message = f"Too many wrong passwords from your address. Try again in {wait} second{'s' if wait != 1 else ''}."
    response = Response(render_template("login.html", next=target, message=message), status=429)
    response.headers["Retry-After"] = str(wait)
    return response


@bp.post("/logout")
def logout():
    """Sign out (CSRF-protected: a link elsewhere cannot sign you out)."""
    if not csrf_ok():
        abort(400)
    sign_out()
    return redirect(url_for("dashboard.login"))


# -- query arguments ---------------------------------------------------------------------------


def _threshold() -> Threshold:
    """The eligibility threshold asked for: `min_minutes` or `min_percent`, as the CLI's options."""
    values: dict[str, float] = {}
    for name in THRESHOLD_ARGS:
        raw = request.args.get(name, "").strip()
        if raw:
            try:
                values[name] = float(raw)
            except ValueError:
                raise BadQuery(f"{name} must be a number, got {raw!r}") from None
            if not math.isfinite(values[name]):
                raise BadQuery(f"{name} must be a number, got {raw!r}")
    return Threshold(**values)


def threshold_args(threshold: Threshold) -> dict[str, float]:
    """The query arguments that carry `threshold` to the next page (none without one)."""
    return threshold.describe() or {}


def threshold_minutes(threshold: Threshold, window: int | None) -> float | None:
    """The threshold in minutes attended (a percentage of the instance window converted), for the histogram line."""
    if threshold.min_percent is not None:
        return None if not window else math.ceil(threshold.min_percent * window / 100 - 1e-6) / 60
    return threshold.min_minutes


def _uuid() -> str:
    uuid = request.args.get("uuid", "")
    if not uuid:
        raise BadQuery("uuid is required")
    db = get_db()
    return current_instance(db, uuid, uuid, live_max_age=LIVE_MAX_AGE, lock_timeout=REFRESH_LOCK_TIMEOUT)


def _instance_request() -> tuple[Store, str, Threshold]:
    """The database, the instance and the eligibility threshold: the page's, else the meeting's stored rules."""
    db, uuid, threshold = get_db(), _uuid(), _threshold()
    return db, uuid, threshold if threshold.given else stored_threshold(db, uuid)


def _page() -> int:
    try:
        page = int(request.args.get("page", "1") or 1)
    except ValueError:
        raise BadQuery("page must be a whole number") from None
    if page < 1:
        raise BadQuery("page must be 1 or more")
    return page


def _table_query() -> dq.TableQuery:
    page = _page()
    return dq.TableQuery(
        search=request.args.get("q", "").strip()[:200],
        show=request.args.get("show", "all") or "all",
        sort=request.args.get("sort", "attended") or "attended",
        descending=request.args.get("dir", "desc") != "asc",
        page=page,
    )


def _seconds_since(iso: str | None, now: int) -> int | None:
    if not iso:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return max(0, now - int(moment.astimezone(UTC).timestamp()))


# -- pages -------------------------------------------------------------------------------------


@bp.get("/")
def meetings():
    """Every instance with its window, state, people, peak, eligible and sources."""
    db = get_db()
    threshold = _threshold()
    rows = current_meetings(db, live_max_age=LIVE_MAX_AGE, lock_timeout=REFRESH_LOCK_TIMEOUT)
    states = dq.instance_states(db)
    # The threshold typed on the page for all, else each meeting's stored rules (worker.py rules).
    thresholds = {
        row["instance_uuid"]: threshold if threshold.given else stored_threshold(db, row["instance_uuid"])
        for row in rows
    }
    eligible = dq.eligible_counts(db, thresholds, now=now_seconds())
    for row in rows:
        row.update(states.get(row["instance_uuid"], {"peak": None, "live": False, "in_now": None, "last_report": None}))
        row["eligible"] = eligible.get(row["instance_uuid"], 0) if thresholds[row["instance_uuid"]].given else None
    return render_template("meetings.html", meetings=rows, threshold=threshold)


@bp.get("/instance")
def instance():
    """Headline numbers, charts (drawn from data.json), reconciliation."""
    db, uuid, threshold = _instance_request()
    now = now_seconds()
    result = summary(db, uuid, now=now, threshold=threshold)
    meeting = result["meeting"]
    live = not meeting["ended"] and meeting["end_time"] is None
    return render_template(
        "instance.html",
        uuid=uuid,
        meeting=meeting,
        summary=result,
        metrics=headline(result),
        threshold=threshold,
        live=live,
        poll_seconds=POLL_SECONDS,
        newest_age=_seconds_since(dq.newest_webhook_at(db, uuid), now),
        recon_shown=20,
        funnel=dq.has_funnel_inputs(db, meeting["meeting_id"]),
        page_threshold=_threshold(),
    )


def _funnel_chart(db: Store, uuid: str) -> dict[str, Any]:
    """The record funnel's stages as bars (issue 16) under the page's threshold, else the stored rules."""
    try:
        result = funnel_of(db, uuid, overrides=_threshold().describe())
    except BadQuery:
        return {"stages": [], "rules": None}  # e.g. nothing computed for this instance yet
    top = max((s["count"] for s in result["stages"]), default=0) or 1
    page: dict[str, Any] = {**threshold_args(_threshold())}  # url_for takes Any keyword values
    stages = [
        {
            **s,
            "label": STAGE_LABELS[s["stage"]],
            "width": round(100 * s["count"] / top, 2),
            "href": url_for("dashboard.funnel_stage", uuid=uuid, stage=s["stage"], **page),
        }
        for s in result["stages"]
    ]
    return {"stages": stages, "rules": result["rules"], "meeting": result["meeting"], "topic": result["topic"]}


@bp.get("/instance/funnel.json")
def instance_funnel() -> Response:
    """The instance page's funnel bars, loaded apart: counting 20,000 people must not hold up the page."""
    db, uuid = get_db(), _uuid()
    body = _funnel_chart(db, uuid) if dq.has_funnel_inputs(db, dq.meeting_id_of(db, uuid)) else {"stages": []}
    return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")


@bp.get("/instance/data.json")
def instance_data() -> Response:
    """The instance page's live numbers and chart data: curve, peak, histogram, reconciliation counts."""
    db, uuid, threshold = _instance_request()
    now = now_seconds()
    result = summary(db, uuid, now=now, threshold=threshold)
    meeting = result["meeting"]
    peak_at = dq.epoch_or_none(result["peak_at"])
    times, present = dq.concurrency_curve(
        db, uuid, meeting, now=now, points=CURVE_POINTS, extra=(peak_at,) if peak_at else ()
    )
    body = {
        "instance_uuid": uuid,
        "as_of": meeting["as_of"],
        "computed_at": meeting["computed_at"],
        "live": not meeting["ended"] and meeting["end_time"] is None,
        "newest_delivery_age_seconds": _seconds_since(dq.newest_webhook_at(db, uuid), now),
        "metrics": headline(result),
        "threshold": threshold.describe(),
        "threshold_minutes": threshold_minutes(threshold, meeting["window_seconds"]),
        "curve": {"times": times, "present": present},
        "peak": {"time": peak_at, "present": result["peak_concurrent"]},
        "histogram": histogram(dq.attended_seconds(db, uuid, now=now)),
        "reconciliation": {name: len(people) for name, people in result["reconciliation"].items()},
    }
    return Response(json.dumps(body, separators=(",", ":")), mimetype="application/json")


@bp.get("/attendance")
def attendance_table():
    """One page of the attendance table: search, filter, sort, page in SQL."""
    db, uuid, threshold = _instance_request()
    query = _table_query()
    result = dq.attendance_rows(db, uuid, now=now_seconds(), threshold=threshold, query=query)
    pages = max(1, -(-result["total"] // dq.PAGE_SIZE))
    return render_template(
        "attendance.html",
        uuid=uuid,
        meeting=result["meeting"],
        rows=result["attendees"],
        total=result["total"],
        pages=pages,
        query=query,
        threshold=threshold,
        args={k: v for k, v in request.args.items() if k != "page"},
        sorts=list(dq.SORTS),
        shows=dq.SHOWS,
    )


def _export_rows() -> dict[str, Any]:
    db, uuid, threshold = _instance_request()
    return dq.attendance_rows(db, uuid, now=now_seconds(), threshold=threshold, query=_table_query(), limit=None)


def _filename(result: dict[str, Any], ext: str) -> str:
    meeting_id = "".join(c for c in str(result["meeting"]["meeting_id"] or "meeting") if c.isalnum())
    return f"attendance-{meeting_id}.{ext}"


@bp.get("/attendance.csv")
def attendance_csv() -> Response:
    """The table's rows (every page, the same filter and order) as the CLI's spreadsheet-safe CSV."""
    result = _export_rows()
    response = Response(
        stream_with_context(csv_lines(result["attendees"], attendee_fields(result))), mimetype="text/csv"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(result, "csv")}"'
    return response


@bp.get("/attendance.jsonl")
def attendance_jsonl() -> Response:
    """The table's rows as JSON lines, one attendee per line (the CLI's attendance rows)."""
    result = _export_rows()

    def lines() -> Iterator[str]:
        for row in result["attendees"]:
            yield json.dumps(row, ensure_ascii=False) + "\n"

    response = Response(stream_with_context(lines()), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = f'attachment; filename="{_filename(result, "jsonl")}"'
    return response


@bp.get("/funnel")
def funnel_stage():
    """The record funnel's bars (without `stage`), or the people at one stage, 50 a page (`funnel --stage`)."""
    db, uuid = get_db(), _uuid()
    stage = request.args.get("stage", "")
    if not stage:
        return render_template(
            "funnel.html", uuid=uuid, funnel=_funnel_chart(db, uuid), stage=None, threshold=_threshold()
        )
    if stage not in STAGE_LABELS:
        raise BadQuery(f"stage must be one of {', '.join(STAGE_LABELS)}, got {stage!r}")
    result = funnel_of(db, uuid, overrides=_threshold().describe(), stage=stage)
    page, people = _page(), result["people"]
    pages = max(1, -(-len(people) // dq.PAGE_SIZE))
    return render_template(
        "funnel.html",
        uuid=uuid,
        result=result,
        stage=stage,
        label=STAGE_LABELS[stage],
        threshold=_threshold(),
        people=people[(page - 1) * dq.PAGE_SIZE : page * dq.PAGE_SIZE],
        total=len(people),
        page=page,
        pages=pages,
        args={k: v for k, v in request.args.items() if k != "page"},
    )


@bp.get("/person")
def person():
    """One person's sessions and connections on a time line, each with its source and raw record."""
    db = get_db()
    uuid = _uuid()
    key = request.args.get("key", "")
    now = now_seconds()
    story = dq.person_story(db, uuid, key, now=now)
    if story is None:
        raise UnknownMeeting(f"no attendee {key!r} in this instance")
    meeting = summary(db, uuid, now=now)["meeting"]  # only its window is used: cheap next to the person
    # A certificate is per meeting (issued from one of its instances): the person's for this meeting.
    certificates = dq.person_certificates(db, meeting["meeting_id"] or uuid, key, story["email"])
    return render_template(
        "person.html",
        uuid=uuid,
        meeting=meeting,
        person=story,
        lanes=_lanes(story, meeting, now),
        certificates=certificates,
    )


def _lanes(story: dict[str, Any], meeting: dict[str, Any], now: int) -> dict[str, Any]:
    """Bars of the person's time line as percentages of the instance window (an SVG, drawn on the server)."""
    sessions = _session_spans(story["sessions"], now)
    reports = _report_spans(story["connections"], now)
    webhooks = _webhook_spans(story["connections"], now)
    first, last = _time_range(meeting, sessions, [*reports, *webhooks], now)
    width = max(1, last - first)
    return {
        "first": first,
        "last": last,
        "sessions": [_bar(s, e, first, width) for s, e in sessions],
        "webhook": [_bar(s, e, first, width) for s, e in webhooks],
        "report": [_bar(s, e, first, width) for s, e in reports],
    }


Span = tuple[int, int]  # (start, end) in epoch seconds


def _session_spans(sessions: list[dict[str, Any]], now: int) -> list[Span]:
    """Each merged session with a start; one still open runs until `now`."""
    return [
        (start, dq.epoch_or_none(s["end"]) or now)
        for s in sessions
        if (start := dq.epoch_or_none(s["start"])) is not None
    ]


def _report_spans(connections: list[dict[str, Any]], now: int) -> list[Span]:
    """Each report row with a join time; one without a leave runs until `now`."""
    return [
        (start, dq.epoch_or_none(c["leave"]) or now)
        for c in connections
        if c["source"] == "report" and (start := dq.epoch_or_none(c["join"])) is not None
    ]


def _webhook_spans(connections: list[dict[str, Any]], now: int) -> list[Span]:
    """Per webhook connection, its first and last event time; a connection seen once runs until `now`."""
    times: dict[str, list[int]] = {}
    for c in connections:
        if c["source"] == "report":
            continue
        moments = (dq.epoch_or_none(c["join"]), dq.epoch_or_none(c["leave"]))
        times.setdefault(c["connection"] or "", []).extend(t for t in moments if t is not None)
    return [(min(ts), max(ts) if len(ts) > 1 else now) for ts in times.values() if ts]


def _time_range(meeting: dict[str, Any], sessions: list[Span], connections: list[Span], now: int) -> Span:
    """The time line's (first, last): the instance window (open: until `now`), widened to every bar's start."""
    starts = [s for s, _ in sessions] + [s for s, _ in connections]
    first = dq.epoch_or_none(meeting["start_time"]) or min(starts, default=now)
    last = dq.epoch_or_none(meeting["end_time"]) or max([now, *(e for _, e in sessions)])
    return min([first, *starts]), last


def _bar(start: int, end: int, first: int, width: int) -> dict[str, float]:
    """A bar's left edge and width as percentages of the time line (at least 0.3 %, so it shows)."""
    return {"x": round(100 * (start - first) / width, 3), "w": max(0.3, round(100 * (end - start) / width, 3))}


@bp.get("/raw/<int:record_id>.json")
def raw(record_id: int) -> Response:
    """One raw record's body exactly as stored (a webhook delivery or a report page)."""
    found = dq.raw_record(get_db(), record_id)
    if found is None:
        abort(404)
    _, body = found
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = f'inline; filename="raw-record-{record_id}.json"'
    return response
