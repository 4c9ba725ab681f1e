"""Per-meeting rules (issue 16): minimum attendance and pass percent, versioned.

Every change is a new meeting_rules row with its time; the current rules are the newest
row. Nothing is updated or deleted, so the history shows which rules applied when.
"""

from __future__ import annotations

from typing import Any

from store.db import Store, durable_write
from store.evidence import utc_now

RULE_FIELDS = ("min_minutes", "min_percent", "pass_percent")
_COLUMNS = ("id", "meeting_id", *RULE_FIELDS, "set_at")


def current_rules(db: Store, meeting_id: str | None) -> dict[str, Any] | None:
    """The newest rules row of a meeting, or None when none was ever set."""
    row = db.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM meeting_rules WHERE meeting_id = ? ORDER BY id DESC LIMIT 1", [meeting_id]
    ).fetchone()
    return dict(zip(_COLUMNS, row, strict=True)) if row else None


def rules_history(db: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Every rules row of a meeting, oldest first."""
    cursor = db.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM meeting_rules WHERE meeting_id = ? ORDER BY id", [meeting_id]
    )
    return [dict(zip(_COLUMNS, r, strict=True)) for r in cursor]


def set_rules(
    db: Store, meeting_id: str, values: dict[str, float | None], *, set_at: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Record `values` as the meeting's rules unless they are the current ones; (rules, changed)."""
    with durable_write(db) as conn:
        row = conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM meeting_rules WHERE meeting_id = ? ORDER BY id DESC LIMIT 1",
            (meeting_id,),
        ).fetchone()
        current = dict(zip(_COLUMNS, row, strict=True)) if row else None
        if current and all(current[f] == values.get(f) for f in RULE_FIELDS):
            return current, False
        when = set_at or utc_now()
        rule_id = conn.execute(
            "INSERT INTO meeting_rules (meeting_id, min_minutes, min_percent, pass_percent, set_at) "
            "VALUES (?, ?, ?, ?, ?) RETURNING id",
            (meeting_id, *(values.get(f) for f in RULE_FIELDS), when),
        ).fetchone()[0]
    return {"id": rule_id, "meeting_id": meeting_id, **{f: values.get(f) for f in RULE_FIELDS}, "set_at": when}, True
