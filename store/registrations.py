"""Outside registration lists (issue 16): the imported file as evidence, its rows, its rejects.

The file's bytes are a raw record in the hash chain (source 'import'); importing the same
bytes for the same meeting again finds that import and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from store.db import Store, durable_write
from store.evidence import append_import, content_hash, utc_now


@dataclass(frozen=True)
class ImportResult:
    """What one import did."""

    import_id: int
    raw_id: int
    created: bool  # False: these bytes were imported for this meeting before
    rows: int
    valid: int
    rejected: int
    new: int  # registrations not known before this import


def save_import(
    db: Store,
    meeting_id: str,
    *,
    body: bytes,
    filename: str,
    rows: Sequence[Mapping[str, Any]],
    rejects: Sequence[Mapping[str, Any]],
    imported_at: str | None = None,
) -> ImportResult:
    """Store the file in the chain and its registrations; idempotent by the file's SHA-256."""
    sha256 = content_hash(body)
    with durable_write(db) as conn:
        known = conn.execute(
            "SELECT id, raw_id, rows, valid, rejected FROM registration_imports WHERE meeting_id = ? AND sha256 = ?",
            (meeting_id, sha256),
        ).fetchone()
        if known:
            return ImportResult(known[0], known[1], False, known[2], known[3], known[4], 0)
        when = imported_at or utc_now()
        record = append_import(conn, body, url=f"file:{filename}", meeting_id=meeting_id, received_at=when)
        import_id = conn.execute(
            "INSERT INTO registration_imports (meeting_id, raw_id, filename, sha256, imported_at, rows, valid, rejected) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (meeting_id, record.id, filename, sha256, when, len(rows) + len(rejects), len(rows), len(rejects)),
        ).fetchone()[0]
        # The first import naming an email keeps it: a later list adds people, never rewrites them.
        new = conn.executemany(
            "INSERT INTO outside_registrations (meeting_id, email_key, email, name, extra, import_id, line) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [
                (
                    meeting_id,
                    r["email_key"],
                    r["email"],
                    r.get("name"),
                    json.dumps(r["extra"], ensure_ascii=False),
                    import_id,
                    r["line"],
                )
                for r in rows
            ],
        ).rowcount
        conn.executemany(
            "INSERT INTO registration_rejects (import_id, line, email, reason) VALUES (?, ?, ?, ?)",
            [(import_id, r["line"], r.get("email"), r["reason"]) for r in rejects],
        )
    assert import_id is not None
    return ImportResult(import_id, record.id, True, len(rows) + len(rejects), len(rows), len(rejects), new)


def outside_registrations(db: Store, meeting_id: str | None) -> list[dict[str, Any]]:
    """The imported registrations of a meeting (email, name, extra)."""
    cursor = db.execute(
        "SELECT email_key, email, name, extra FROM outside_registrations WHERE meeting_id = ? ORDER BY email_key",
        [meeting_id],
    )
    return [{"email": r[0], "email_as_given": r[1], "name": r[2], "extra": json.loads(r[3])} for r in cursor]


def has_imports(db: Store, meeting_id: str | None) -> bool:
    """Whether an outside list was ever imported for the meeting."""
    return (
        db.execute("SELECT 1 FROM registration_imports WHERE meeting_id = ? LIMIT 1", [meeting_id]).fetchone()
        is not None
    )


def rejects_of(db: Store, import_id: int) -> list[dict[str, Any]]:
    """The rows an import could not take, with why."""
    cursor = db.execute(
        "SELECT line, email, reason FROM registration_rejects WHERE import_id = ? ORDER BY line", [import_id]
    )
    return [{"line": r[0], "email": r[1], "reason": r[2]} for r in cursor]
