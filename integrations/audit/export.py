"""The raw join log as JSONL or CSV byte chunks, for export-raw, evidence and /api/raw-events.

Streams: one SELECT (store/rawlog.py), each record flattened on its own
(integrations/zoom/rawlog.py), output gathered into chunks of about 64 KB. Memory stays
flat whatever the size of the log.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from integrations.reads.formats import FORMULA_STARTS, csv_cell
from integrations.zoom.rawlog import (
    RAW_LOG_COLUMNS,
    blank_line,
    body_text,
    flatten_report_page,
    flatten_webhook,
    new_line,
    stored_bytes,
)
from integrations.zoom.webhooks import text
from store.attendance_queries import UnknownMeeting, meeting_number
from store.rawlog import meeting_stored, raw_records

FORMATS = ("jsonl", "csv")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CHUNK_BYTES = 64 * 1024
CSV_ROWS_PER_CHUNK = 256  # raw-log CSV rows are 300-600 bytes: chunks of about 100 KB

# JSON allows these raw inside strings; tools that split on Unicode line breaks (Python's
# str.splitlines) would cut a record in two, so they are written escaped.
_LINE_BREAKS = (("\u2028".encode(), b"\\u2028"), ("\u2029".encode(), b"\\u2029"), ("\x85".encode(), b"\\u0085"))


def parse_bound(value: str) -> str:
    """A --since/--until time (ISO 8601 date or date-time; UTC unless it says otherwise) as stored `received_at`."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+00:01 or 9999-12-31T23:59-23:59 lie outside the years UTC can show.
        raise ValueError(f"out of range (years 1 to 9999 in UTC): {value!r}") from None
    # store.evidence.utc_now's format, so string order is time order.
    return in_utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def meeting_filter(value: str | None) -> str | None:
    """A --meeting value as stored: a meeting number without its spaces or dashes ("812 3456 7890")."""
    if not value:
        return None
    return meeting_number(value) or value.strip()


def check_meeting(conn, meeting: str | None) -> None:
    """UnknownMeeting when nothing stored names `meeting` (a filter value from `meeting_filter`).

    A known meeting with no record in a --since/--until window is not an error: its export is empty.
    """
    if meeting is None or meeting_stored(conn, meeting):
        return
    # Only deliveries not normalized yet can still name it (the generator is closed when dropped).
    if next(raw_log_lines(conn, meeting=meeting), None) is not None:
        return
    raise UnknownMeeting(f"no stored meeting or instance {meeting!r} (give a meeting number or an instance UUID)")


def raw_log_lines(conn, **filters: Any) -> Iterator[dict[str, Any]]:
    """Raw join-log lines (dicts with JSONL_COLUMNS) in record order; `filters` as store.rawlog.raw_records takes them."""
    meeting = filters.get("meeting")
    for (
        record_id,
        source,
        received_at,
        body,
        sha256,
        chain_hash,
        stale,
        url,
        meeting_id,
        meeting_uuid,
        pending,
    ) in raw_records(conn, **filters):
        if body.__class__ is not bytes:
            body = stored_bytes(body)
        if source == "webhook":
            line = new_line()
            line["record_id"] = record_id
            line["source"] = source
            line["received_at"] = received_at
            line["stale_timestamp"] = stale == 1
            line["sha256"] = sha256
            line["chain_hash"] = chain_hash
            flatten_webhook(body, line)
            # Not normalized yet: the database could not tell whether it belongs to `meeting`;
            # its body says, as normalization will (integrations.zoom.webhooks.text).
            if (
                pending
                and meeting is not None
                and meeting not in (text(line["meeting_id"]), text(line["meeting_uuid"]))
            ):
                continue
            yield line
        else:
            base = {
                "record_id": record_id,
                "source": source,
                "received_at": received_at,
                "meeting_id": meeting_id,
                "meeting_uuid": meeting_uuid,
                "stale_timestamp": stale == 1,
                "url": url,
                "sha256": sha256,
                "chain_hash": chain_hash,
            }
            if source == "import":
                # An imported file (a registration list, issue 16): one line, its bytes as they are.
                raw, encoding = body_text(body)
                yield blank_line(**base, event="import.file", raw=raw, raw_encoding=encoding)
            else:
                yield from flatten_report_page(body, base)


def _json_line(line: dict[str, Any]) -> bytes:
    try:
        data = orjson.dumps(line)
    except orjson.JSONEncodeError:
        # A lone surrogate (only the json fallback parser lets one through): escape it.
        data = json.dumps(line, ensure_ascii=True).encode()
    if not data.isascii():
        for char, escaped in _LINE_BREAKS:
            if char in data:
                data = data.replace(char, escaped)
    return data


def jsonl_chunks(lines: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """JSON Lines: one object per line, UTF-8, keys in JSONL_COLUMNS order."""
    # _chunks inlined, with orjson called directly: this loop runs once per line.
    dumps, buffer, size = orjson.dumps, [], 0
    for line in lines:
        try:
            data = dumps(line)
        except orjson.JSONEncodeError:
            data = _json_line(line)
        if not data.isascii():
            data = _json_line(line)
        buffer.append(data)
        size += len(data)
        if size >= CHUNK_BYTES:
            buffer.append(b"")
            yield b"\n".join(buffer)
            buffer, size = [], 0
    if buffer:
        buffer.append(b"")
        yield b"\n".join(buffer)


# A cell starting like a formula, found in the joined row (cells never contain a comma there).
_FORMULA_AFTER_COMMA = re.compile(",[=+\\-@\t\r]")


def csv_rows(
    lines: Iterable[dict[str, Any]], fields: tuple[str, ...] = RAW_LOG_COLUMNS, *, header: bool = True
) -> Iterator[str]:
    """CSV rows (header first, unless `header` is false; without line ends), as integrations.reads.formats.csv_lines writes them.

    `lines` are dicts whose first keys are `fields`, in order (as raw_log_lines makes them).
    Most rows need neither quoting nor neutralizing: those are joined directly, since the
    csv module and a function call per cell cost more than the rest of the export. Any
    other row (a quote, comma or line break, a cell starting like a formula, a float or a
    nested value) goes through the csv module and `csv_cell`, exactly like csv_lines.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow(fields)
        yield buffer.getvalue()[:-2]
    count = len(fields)
    checked = False
    for line in lines:
        values = list(line.values())
        del values[count:]
        if not checked:
            if tuple(line)[:count] != tuple(fields):
                raise ValueError("csv_rows: lines must start with the CSV fields, in order")
            checked = True
        # "\r" stands for a value of another type: it sends the row to the csv module.
        text = ",".join(
            [
                v
                if v.__class__ is str
                else ""
                if v is None
                else ("true" if v else "false")
                if v.__class__ is bool
                else str(v)
                if v.__class__ is int
                else "\r"
                for v in values
            ]
        )
        if (
            text.count(",") == count - 1
            and '"' not in text
            and "\n" not in text
            and "\r" not in text
            and not text.startswith(FORMULA_STARTS)
            and _FORMULA_AFTER_COMMA.search(text) is None
            and (count > 1 or text)
        ):
            yield text
            continue
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(v) for v in values])
        yield buffer.getvalue()[:-2]


def csv_header(fields: tuple[str, ...] = RAW_LOG_COLUMNS) -> bytes:
    """The CSV header row, with its line end."""
    return (next(csv_rows((), fields)) + "\r\n").encode()


def csv_chunks(
    lines: Iterable[dict[str, Any]], fields: tuple[str, ...] = RAW_LOG_COLUMNS, *, header: bool = True
) -> Iterator[bytes]:
    """Spreadsheet-safe CSV (UTF-8, CRLF) of the raw-log columns, without `raw`."""
    batch: list[str] = []
    for row in csv_rows(lines, fields, header=header):
        batch.append(row)
        if len(batch) >= CSV_ROWS_PER_CHUNK:
            batch.append("")  # the last row's line end
            yield "\r\n".join(batch).encode("utf-8", "backslashreplace")
            batch = []
    if batch:
        batch.append("")
        yield "\r\n".join(batch).encode("utf-8", "backslashreplace")


def export_chunks(conn, fmt: str, *, header: bool = True, **filters: Any) -> Iterator[bytes]:
    """The raw join log in `fmt` (jsonl or csv) as byte chunks (`header`: the CSV header row; `filters`: raw_records')."""
    lines = raw_log_lines(conn, **filters)
    if fmt == "jsonl":
        return jsonl_chunks(lines)
    if fmt == "csv":
        return csv_chunks(lines, header=header)
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
