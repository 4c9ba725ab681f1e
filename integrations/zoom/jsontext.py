"""JSON from Zoom as text Python can store and print. Pure: no I/O.

A lone UTF-16 surrogate escape (a hostile display name, issue 7) would make a str SQLite
cannot store; the parsed text replaces it, the raw bytes stay as they came."""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def replace_lone_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD.

    Raises RecursionError for structures nested deeper than Python's recursion limit.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [replace_lone_surrogates(v) for v in value]
    return value


def loads(body: bytes) -> Any:
    """`body` decoded as UTF-8 JSON, without lone surrogates.

    Raises UnicodeDecodeError or another ValueError, or RecursionError (nested too deeply).
    """
    data = json.loads(body.decode("utf-8"))
    # Only an escape can produce one (raw surrogate bytes are not valid UTF-8): skip the walk otherwise.
    if _SURROGATE_ESCAPE.search(body):
        data = replace_lone_surrogates(data)
    return data
