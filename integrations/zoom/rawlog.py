"""Flatten stored raw records (webhook bodies, report pages) into raw join-log lines. Pure.

Every stored record appears in the log, with values as Zoom sent them and `raw` giving
back the stored bytes exactly (docs/internals.md: lines, encodings, parse errors)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import orjson

from integrations.zoom.webhooks import PARTICIPANT_FIELDS, TIME_FIELDS

# Columns of the raw join log, in order. JSONL lines add `raw` and `raw_encoding`.
RAW_LOG_COLUMNS = (
    "record_id",
    "item",
    "source",
    "received_at",
    "event",
    "event_ts",
    "meeting_id",
    "meeting_uuid",
    "user_id",
    "participant_uuid",
    "participant_user_id",
    "registrant_id",
    "user_name",
    "email",
    "phone_number",
    "customer_key",
    "join_time",
    "leave_time",
    "date_time",
    "leave_reason",
    "duration",
    "status",
    "failover",
    "bo_mtg_id",
    "stale_timestamp",
    "url",
    "sha256",
    "chain_hash",
    "parse_error",
)
JSONL_COLUMNS = (*RAW_LOG_COLUMNS, "raw", "raw_encoding")

# What each column means; the evidence bundle's README is generated from this.
COLUMN_DOCS = {
    "record_id": "id of the stored raw record (a webhook delivery or a report page); `verify` names records by it",
    "item": "position of the row inside its report page (0 = first); empty for webhook deliveries and row-less pages",
    "source": "`webhook` (a delivery Zoom pushed to us) or `report` (a page we fetched from Zoom's REST API)",
    "received_at": "when we stored the record, UTC ISO 8601 (the time covered by the hash chain)",
    "event": "Zoom's event name for webhooks; `report.participant`, `report.registrant` or `report.page` for report lines",
    "event_ts": "Zoom's `event_ts` of a webhook (epoch milliseconds)",
    "meeting_id": "meeting or webinar number",
    "meeting_uuid": "instance UUID (one run of the meeting or webinar)",
    "user_id": "Zoom's per-connection participant id (a rejoin gets a new one)",
    "participant_uuid": "Zoom's participant UUID (webhooks)",
    "participant_user_id": "the Zoom account id of a signed-in participant (empty for guests)",
    "registrant_id": "registration id: the stable identity of a registered guest",
    "user_name": "display name (webhook `user_name`, report `name`, registrant first and last name)",
    "email": "email (webhook `email`, report `user_email`); often empty for guests",
    "phone_number": "dial-in number (webhooks)",
    "customer_key": "the host's own key for the participant, if set",
    "join_time": "join time as Zoom sent it (UTC)",
    "leave_time": "leave time as Zoom sent it (UTC)",
    "date_time": "time of a waiting-room event as Zoom sent it (UTC)",
    "leave_reason": "Zoom's free-text leave reason",
    "duration": "report row duration as Zoom sent it (documented as seconds; recompute from the times)",
    "status": "report row status (`in_meeting`, `in_waiting_room`) or registrant status",
    "failover": "report row failover flag",
    "bo_mtg_id": "breakout room id of a report row",
    "stale_timestamp": "true when the webhook's signed timestamp was older than the replay window when it arrived",
    "url": "the API URL a report page was fetched from",
    "sha256": "SHA-256 of the stored record's exact bytes (for a report row: of its whole page)",
    "chain_hash": "hash chain value of the record: SHA-256 of `previous chain_hash:sha256:received_at`",
    "parse_error": "why the record could not be read as Zoom JSON, if it could not (its `raw` is still complete)",
    "raw": "JSONL only: the original text, unchanged (a report row: its exact text inside the page)",
    "raw_encoding": "JSONL only: `utf-8`, or `base64` when the stored bytes were not UTF-8 text",
}

# The participant fields a webhook carries, as the webhook parser knows them.
WEBHOOK_PARTICIPANT_FIELDS = PARTICIPANT_FIELDS + TIME_FIELDS
# Report row key -> raw-log column (../shared/zoom/NOTES.md, "Participant reports").
REPORT_ROW_FIELDS = {
    "user_id": "user_id",
    "participant_uuid": "participant_uuid",
    "participant_user_id": "participant_user_id",
    "registrant_id": "registrant_id",
    "name": "user_name",
    "user_email": "email",
    "join_time": "join_time",
    "leave_time": "leave_time",
    "duration": "duration",
    "status": "status",
    "failover": "failover",
    "customer_key": "customer_key",
    "bo_mtg_id": "bo_mtg_id",
}

_TEMPLATE = dict.fromkeys(JSONL_COLUMNS)
_WS = " \t\n\r"
_decoder = json.JSONDecoder()


def blank_line(**values: Any) -> dict[str, Any]:
    """A raw-log line with every column, in column order, set from `values`."""
    line = _TEMPLATE.copy()
    line.update(values)
    return line


# The same, with every column None, at the cost of one C call (the export's hot path).
new_line = _TEMPLATE.copy


def stored_bytes(body: Any) -> bytes:
    """A stored body as bytes: BLOBs as they are; TEXT (someone edited the row by hand) as UTF-8."""
    if isinstance(body, bytes):
        return body
    return str(body).encode("utf-8", "surrogatepass")


def body_text(body: bytes) -> tuple[str, str]:
    """The stored bytes as text and its encoding name: UTF-8 when it is, else base64."""
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson refuses some valid JSON (huge integers, lone surrogate escapes) that the
        # normalizer's json module accepts: fall back so the two never disagree.
        return json.loads(body)


def flatten_webhook(body: bytes, line: dict[str, Any]) -> dict[str, Any]:
    """Fill `line` (from `blank_line`) with what one webhook delivery says."""
    line["raw"], line["raw_encoding"] = body_text(body)
    if line["raw_encoding"] != "utf-8":
        line["parse_error"] = "body is not UTF-8 text"
        return line
    try:
        data = _loads(body)
    except (ValueError, RecursionError) as e:
        line["parse_error"] = f"body is not valid JSON: {e}"
        return line
    if not isinstance(data, dict):
        line["parse_error"] = f"body is JSON {type(data).__name__}, not an object"
        return line
    # Values go out as sent; a nested value where Zoom sends a scalar stays nested (JSON) and
    # becomes JSON text in CSV (integrations.reads.formats.csv_cell).
    line["event"] = data.get("event")
    line["event_ts"] = data.get("event_ts")
    payload = data.get("payload")
    obj = payload.get("object") if isinstance(payload, dict) else None
    if isinstance(obj, dict):
        line["meeting_id"] = obj.get("id")
        line["meeting_uuid"] = obj.get("uuid")
        person = obj.get("participant")
        if isinstance(person, dict):
            # Absent keys give None, as the blank line already has: one C-level update.
            line.update(zip(WEBHOOK_PARTICIPANT_FIELDS, map(person.get, WEBHOOK_PARTICIPANT_FIELDS), strict=True))
    return line


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, chars: str) -> str:
    if i >= len(text) or text[i] not in chars:
        found = repr(text[i]) if i < len(text) else "end of text"
        raise ValueError(f"expected {' or '.join(map(repr, chars))} at char {i}, found {found}")
    return text[i]


def top_level_arrays(text: str, keys: tuple[str, ...]) -> dict[str, list[tuple[Any, str]]]:
    """The arrays under `keys` of a JSON object document, each item with its exact source text.

    Raises ValueError when `text` is not one JSON object.
    """
    found: dict[str, list[tuple[Any, str]]] = {}
    i = _skip_ws(text, 0)
    _expect(text, i, "{")
    i = _skip_ws(text, i + 1)
    if text.startswith("}", i):
        i += 1
    else:
        while True:
            _expect(text, i, '"')
            key, i = _decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            _expect(text, i, ":")
            i = _skip_ws(text, i + 1)
            if key in keys and text.startswith("[", i):
                found[key], i = _array_items(text, i)
            else:
                _, i = _decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if _expect(text, i, ",}") == "}":
                i += 1
                break
            i = _skip_ws(text, i + 1)
    if _skip_ws(text, i) != len(text):
        raise ValueError(f"extra data after the JSON object at char {i}")
    return found


def _array_items(text: str, i: int) -> tuple[list[tuple[Any, str]], int]:
    items: list[tuple[Any, str]] = []
    i = _skip_ws(text, i + 1)
    if text.startswith("]", i):
        return items, i + 1
    while True:
        start = i
        value, i = _decoder.raw_decode(text, i)
        items.append((value, text[start:i]))
        i = _skip_ws(text, i)
        if _expect(text, i, ",]") == "]":
            return items, i + 1
        i = _skip_ws(text, i + 1)


_REPORT_KEYS = tuple(REPORT_ROW_FIELDS)
_REPORT_COLUMNS = tuple(REPORT_ROW_FIELDS.values())


def _participant_columns(row: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    return zip(_REPORT_COLUMNS, map(row.get, _REPORT_KEYS), strict=True)


def _registrant_columns(row: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    name = " ".join(row[k] for k in ("first_name", "last_name") if isinstance(row.get(k), str) and row[k])
    return iter(
        (
            ("registrant_id", row.get("id")),
            ("email", row.get("email")),
            ("status", row.get("status")),
            ("user_name", name or None),
        )
    )


def flatten_report_page(body: bytes, base: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One line per participant or registrant row of a stored report page (one line if none)."""
    text, encoding = body_text(body)
    try:
        if encoding != "utf-8":
            raise ValueError("page is not UTF-8 text")
        arrays = top_level_arrays(text, ("participants", "registrants"))
    except (ValueError, RecursionError) as e:
        yield blank_line(
            **base, event="report.page", raw=text, raw_encoding=encoding, parse_error=f"page is not a JSON object: {e}"
        )
        return
    emitted = False
    for key, event, columns in (
        ("participants", "report.participant", _participant_columns),
        ("registrants", "report.registrant", _registrant_columns),
    ):
        for item, (row, row_text) in enumerate(arrays.get(key, ())):
            line = _TEMPLATE.copy()
            line.update(base)
            line["item"], line["event"], line["raw"], line["raw_encoding"] = item, event, row_text, "utf-8"
            if isinstance(row, dict):
                line.update(columns(row))
            else:
                line["parse_error"] = f"{key} item is JSON {type(row).__name__}, not an object"
            emitted = True
            yield line
    if not emitted:
        yield blank_line(**base, event="report.page", raw=text, raw_encoding="utf-8")
