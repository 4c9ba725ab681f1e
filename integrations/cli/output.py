"""How CLI commands write their answers: JSON, CSV or a table, chosen by `--format`.

Without `--format`, a terminal gets a table and a pipe or file gets JSON (what scripts want).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from integrations.reads.attendance import json_chunks
from integrations.reads.formats import csv_lines, table_lines

FORMATS = ("table", "csv", "json")


def output_format(fmt: str | None) -> str:
    """The format asked for, else table on a terminal and json otherwise."""
    return fmt or ("table" if sys.stdout.isatty() else "json")


def format_option(f: Callable) -> Callable:
    """The `--format table|csv|json` option."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        help="Output format (default: table on a terminal, json otherwise)",
    )(f)


def emit(chunks: Iterable[str]) -> None:
    """Write text chunks to stdout as they come."""
    out = sys.stdout
    for chunk in chunks:
        out.write(chunk)
    out.flush()


def write_csv(rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> None:
    """Rows as CSV with a header row (cells safe to open in a spreadsheet)."""
    emit(csv_lines(rows, fields))


def write_table(rows: Sequence[dict[str, Any]], fields: Sequence[str], headers: Sequence[str] | None = None) -> None:
    """Rows as an aligned text table."""
    emit(line + "\n" for line in table_lines(rows, fields, headers=headers))


def write_data(
    fmt: str, result: dict[str, Any], list_key: str | None, rows: Iterable[dict[str, Any]], fields: Sequence[str]
) -> bool:
    """Write `result` as JSON (streaming its `list_key` list) or `rows` as CSV; False for a table."""
    if fmt == "json":
        emit(json_chunks(result, list_key))
    elif fmt == "csv":
        write_csv(rows, fields)
    else:
        return False
    return True
