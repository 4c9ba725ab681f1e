"""Parsing an outside registration list (CSV with a header row): pure, bytes in, rows out.

`email` is required; `name` and every other column are kept. A row without a valid email
is returned as a reject with its line and why, never dropped silently; a repeated email
keeps its first row and the repeat is a reject too.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from integrations.attendance.identity import normalize_email

# Deliberately loose: one @, no spaces, a dot in the domain. Stricter checks refuse real addresses.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class RegistrationFileError(Exception):
    "The registration file cannot be read as a CSV list with an email column"


def parse_registrations(body: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, rejects): rows have line, email, email_key, name, extra; rejects line, email, reason."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RegistrationFileError(f"the file is not UTF-8 text (byte {e.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        raise RegistrationFileError("the file is empty: a header row with an `email` column is needed")
    names = [h.strip().lower() for h in header]
    if "email" not in names:
        raise RegistrationFileError(f"no `email` column in the header row (columns: {', '.join(names) or 'none'})")
    email_at = names.index("email")
    name_at = names.index("name") if "name" in names else None
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue  # blank lines are layout, not rows
        email = values[email_at].strip() if email_at < len(values) else ""
        key = normalize_email(email)
        if not key or not _EMAIL.match(key):
            rejects.append(
                {"line": line, "email": email or None, "reason": "missing email" if not email else "invalid email"}
            )
            continue
        if key in seen:
            rejects.append({"line": line, "email": email, "reason": f"repeats the email of line {seen[key]}"})
            continue
        seen[key] = line
        extra = {header[i].strip(): v for i, v in enumerate(values) if i < len(header) and i not in (email_at, name_at)}
        name = values[name_at].strip() if name_at is not None and name_at < len(values) else ""
        rows.append({"line": line, "email": email, "email_key": key, "name": name or None, "extra": extra})
    return rows, rejects
