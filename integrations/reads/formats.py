"""Output formats shared by the CLI and the read API: table, CSV, JSON, JSON lines.

CSV cells are neutralized for spreadsheets: display names are attacker-controlled, and a
cell starting with `=`, `+`, `-`, `@`, tab or carriage return runs as a formula in Excel,
LibreOffice and Google Sheets (OWASP "CSV Injection"). A leading `'` makes it text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell: lists joined by `;`, booleans as true/false, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = ";".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False)
    return neutralize_cell(value)


def csv_lines(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> Iterator[str]:
    """Stream CSV text (header first), one chunk per row, cells neutralized."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(fields)
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(row.get(f)) for f in fields])
        yield buffer.getvalue()


def display_cell(value: Any, width: int = 48) -> str:
    """A value as a table cell for a terminal: control characters escaped, long text cut."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    # Display names are attacker-controlled: an escape sequence must not reach the terminal.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def table_lines(
    rows: Sequence[dict[str, Any]], fields: Sequence[str], *, headers: Sequence[str] | None = None
) -> Iterator[str]:
    """Rows as an aligned plain-text table (header, rule, one line per row)."""
    headers = list(headers or fields)
    cells = [[display_cell(row.get(f)) for f in fields] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    yield "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    yield "  ".join("-" * w for w in widths)
    for r in cells:
        yield "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()


def hms(seconds: int | float | None) -> str:
    """Seconds as H:MM:SS."""
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
