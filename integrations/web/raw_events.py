"""GET /api/raw-events: the raw join log, streamed as JSONL or CSV, behind the API token."""

from __future__ import annotations

from flask import Blueprint, Response, request, stream_with_context

from integrations.audit.export import CONTENT_TYPES, FORMATS, check_meeting, export_chunks, meeting_filter, parse_bound
from integrations.web.api import busy, require_token
from integrations.web.dbconn import settings
from integrations.web.webhooks import json_response
from store.attendance_queries import UnknownMeeting
from store.audit import open_readonly
from store.db import DatabaseUnavailable
from store.errors import DRIVER_ERRORS
from store.postgres import first_line

bp = Blueprint("raw_events", __name__, url_prefix="/api")
bp.before_request(require_token)
# A database that is down, locked or unreadable is a 503 `busy`, as on the other read routes.
bp.register_error_handler(DatabaseUnavailable, busy)


@bp.get("/raw-events")
def raw_events() -> Response:
    """The raw join log (`?meeting=&since=&until=&format=jsonl|csv`), streamed in record order."""
    fmt = request.args.get("format", "jsonl")
    if fmt not in FORMATS:
        return json_response(
            {"error": "bad_format", "parameter": "format", "message": f"format must be one of {', '.join(FORMATS)}"},
            400,
        )
    bounds = {}
    for name in ("since", "until"):
        value = request.args.get(name)
        try:
            bounds[name] = parse_bound(value) if value else None
        except ValueError as e:
            return json_response({"error": f"bad_{name}", "parameter": name, "message": f"{name}: {e}"}, 400)
    meeting = meeting_filter(request.args.get("meeting"))
    # Its own read-only connection: the stream may outlive other requests on this thread's
    # connection, and a long read must never hold a write transaction.
    db = open_readonly(settings().database_path)
    try:
        # Read once before the stream starts: once the 200 is sent, a failure can only cut it short.
        db.execute("SELECT 1 FROM raw_records LIMIT 1")
        check_meeting(db.conn, meeting)
    except UnknownMeeting as e:
        db.close()
        return json_response({"error": "unknown_meeting", "parameter": "meeting", "message": str(e)}, 404)
    except DRIVER_ERRORS as e:  # SQLite locked or not a database; a PostgreSQL statement refused
        db.close()
        raise DatabaseUnavailable(first_line(e)) from None
    except BaseException:
        db.close()
        raise

    def generate():
        try:
            yield from export_chunks(db.conn, fmt, meeting=meeting, **bounds)
        finally:
            db.close()

    response = Response(stream_with_context(generate()), mimetype=CONTENT_TYPES[fmt].split(";")[0])
    response.headers["Content-Type"] = CONTENT_TYPES[fmt]
    response.headers["Content-Disposition"] = f'attachment; filename="raw-events.{fmt}"'
    return response
