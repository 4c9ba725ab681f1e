"""Dashboard routes: sign-in, meetings, instance, attendance table and downloads, person, raw records.

Every number comes from the read layer the CLI uses (integrations/reads/attendance.py,
store/attendance_queries.py), so the page and `worker.py summary` agree; the table pages
and the charts' data come from store/dashboard_queries.py, which pages in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, abort, redirect, render_template, request, stream_with_context, url_for

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
from integrations.web.dbconn import get_db
from store import dashboard_queries as dq
from store.attendance_queries import BadQuery, Threshold, UnknownMeeting, summary
from store.db import DatabaseUnavailable, Store

LIVE_MAX_AGE = 5.0  # seconds: a live instance refreshed this recently is shown as it is
REFRESH_LOCK_TIMEOUT = 10.0  # under gunicorn's 30 s worker timeout
CURVE_POINTS = 2000  # zoomable, and ~25 KB of JSON
POLL_SECONDS = 4  # the live page asks for new numbers this often (issue 15: at least every 5 s)
OPEN_ENDPOINTS = {"dashboard.login", "dashboard.static"}

bp.after_request(security_headers)


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token, "plain": plain, "hms": hms, "signed_in": signed_in}


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
    if not csrf_ok():
        return render_template("login.html", next=target, message="The form expired: try again."), 400
    if not password_matches(request.form.get("password", "")):
        return render_template("login.html", next=target, message="Wrong password."), 401
    sign_in()
    return redirect(target)


@bp.post("/logout")
def logout():
    """Sign out (CSRF-protected: a link elsewhere cannot sign you out)."""
    if not csrf_ok():
        abort(400)
    sign_out()
    return redirect(url_for("dashboard.login"))


# -- query arguments ---------------------------------------------------------------------------


def _threshold() -> Threshold:
    raw = request.args.get("min_minutes", "").strip()
    if not raw:
        return Threshold()
    try:
        return Threshold(min_minutes=float(raw))
    except ValueError:
        raise BadQuery(f"min_minutes must be a number, got {raw!r}") from None


def _uuid() -> str:
    uuid = request.args.get("uuid", "")
    if not uuid:
        raise BadQuery("uuid is required")
    db = get_db()
    return current_instance(db, uuid, uuid, live_max_age=LIVE_MAX_AGE, lock_timeout=REFRESH_LOCK_TIMEOUT)


def _instance_request() -> tuple[Store, str, Threshold]:
    """The database, the instance and the eligibility threshold a page of one instance asks about."""
    return get_db(), _uuid(), _threshold()


def _table_query() -> dq.TableQuery:
    try:
        page = int(request.args.get("page", "1") or 1)
    except ValueError:
        raise BadQuery("page must be a whole number") from None
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
    eligible = dq.eligible_counts(db, threshold, now=now_seconds())
    for row in rows:
        row.update(states.get(row["instance_uuid"], {"peak": None, "live": False, "in_now": None, "last_report": None}))
        row["eligible"] = eligible.get(row["instance_uuid"], 0) if threshold.given else None
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
    )


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
        "threshold_minutes": threshold.min_minutes,
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
    db = get_db()
    uuid = _uuid()
    return dq.attendance_rows(db, uuid, now=now_seconds(), threshold=_threshold(), query=_table_query(), limit=None)


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
    result = summary(db, uuid, now=now)  # only its window is used: cheap next to the person
    return render_template(
        "person.html", uuid=uuid, meeting=result["meeting"], person=story, lanes=_lanes(story, result["meeting"], now)
    )


def _lanes(story: dict[str, Any], meeting: dict[str, Any], now: int) -> dict[str, Any]:
    """Bars of the person's time line as percentages of the instance window (an SVG, drawn on the server)."""
    spans = [
        (start, dq.epoch_or_none(s["end"]) or now)
        for s in story["sessions"]
        if (start := dq.epoch_or_none(s["start"])) is not None
    ]
    conns: list[tuple[int, int, str]] = []
    webhook: dict[str, list[int]] = {}  # per connection: first join, last leave
    for c in story["connections"]:
        start, end = dq.epoch_or_none(c["join"]), dq.epoch_or_none(c["leave"])
        if c["source"] == "report":
            if start is not None:
                conns.append((start, end or now, "report"))
            continue
        seen = webhook.setdefault(c["connection"] or "", [])
        seen.extend(t for t in (start, end) if t is not None)
    conns.extend((min(ts), max(ts) if len(ts) > 1 else now, "webhook") for ts in webhook.values() if ts)
    starts = [s for s, _ in spans] + [c[0] for c in conns]
    first = dq.epoch_or_none(meeting["start_time"]) or min(starts, default=now)
    last = dq.epoch_or_none(meeting["end_time"]) or max([now, *(e for _, e in spans)])
    first = min([first, *starts])
    width = max(1, last - first)

    def bar(start: int, end: int) -> dict[str, float]:
        return {"x": round(100 * (start - first) / width, 3), "w": max(0.3, round(100 * (end - start) / width, 3))}

    return {
        "first": first,
        "last": last,
        "sessions": [bar(s, e) for s, e in spans],
        "webhook": [bar(s, e) for s, e, src in conns if src == "webhook"],
        "report": [bar(s, e) for s, e, src in conns if src == "report"],
    }


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
