"""What the funnel reads and the per-person funnel rows it writes (issue 16): SQL only."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from integrations.attendance.intervals import epoch_seconds
from store.db import Store, durable_write
from store.events import get_state, set_state

FUNNEL_COLUMNS = (
    "person",
    "name",
    "email",
    "registrant_id",
    "person_key",
    "attended_seconds",
    "questions",
    "answered",
    "correct",
    "score_percent",
    "registered",
    "zoom_registered",
    "joined",
    "attended",
    "answered_quiz",
    "passed",
    "rules_id",
)


def instance_head(db: Store, instance_uuid: str) -> dict[str, Any] | None:
    """meeting_id, kind, topic, start/end and window of an instance's derived row."""
    cursor = db.execute(
        "SELECT meeting_id, kind, topic, start_time, end_time, window_seconds FROM attendance_instances "
        "WHERE instance_uuid = ?",
        [instance_uuid],
    )
    row = cursor.fetchone()
    return dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else None


def attendees(db: Store, instance_uuid: str, *, now: int) -> list[dict[str, Any]]:
    """Everyone in the instance's attendance, with their ids and seconds (open sessions run to `now`)."""
    rows = db.execute(
        "SELECT p.person_key, p.name, p.email, p.emails, p.registrant_ids, a.attended_seconds, a.open_since "
        "FROM attendance a JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key "
        "WHERE a.instance_uuid = ?",
        [instance_uuid],
    )
    return [
        {
            "person_key": r[0],
            "name": r[1],
            "email": r[2],
            "emails": r[3],
            "registrant_ids": r[4],
            "attended_seconds": r[5] + (0 if r[6] is None else max(0, now - epoch_seconds(r[6]))),
        }
        for r in rows
    ]


def approved_registrants(db: Store, meeting_id: str | None) -> list[dict[str, Any]]:
    """Zoom's registrants of a meeting who were approved (pending and denied never registered)."""
    rows = db.execute(
        "SELECT registrant_id, email, name FROM registrants WHERE meeting_id = ? "
        "AND coalesce(status, 'approved') = 'approved' ORDER BY registrant_id",
        [meeting_id],
    )
    return [{"registrant_id": r[0], "email": r[1], "name": r[2]} for r in rows]


def _fingerprint(rows: Sequence[Mapping[str, Any]]) -> str:
    # repr of plain values (str, int, float, None) is stable across runs and fast.
    return hashlib.sha256(repr([tuple(row.get(c) for c in FUNNEL_COLUMNS) for row in rows]).encode()).hexdigest()


FUNNEL_VERSION = "1"  # bump when the funnel's rules of matching or stages change


def inputs_signature(db: Store, instance_uuid: str, meeting_id: str | None, rules_id: int | None) -> str:
    """A digest of everything funnel_people of an instance is computed from (issue 16).

    The attendance fingerprint covers the instance's evidence and Zoom's registrants; imports,
    poll definitions, scores (recomputed with each poll report) and the rules version the rest.
    """
    row = db.execute(
        """
        SELECT (SELECT evidence || ':' || (SELECT count(*) FROM attendance WHERE instance_uuid = :u AND open_since IS NOT NULL)
                FROM attendance_instances WHERE instance_uuid = :u),
            (SELECT count(*) || ':' || coalesce(max(id), 0) FROM registration_imports WHERE meeting_id = :m),
            (SELECT count(*) || ':' || coalesce(max(raw_id), 0) FROM polls WHERE meeting_id = :m),
            (SELECT count(*) || ':' || coalesce(sum(correct), 0) FROM quiz_scores WHERE instance_uuid = :u)
        """,
        {"u": instance_uuid, "m": meeting_id},
    ).fetchone()
    text = "\x1f".join(str(v) for v in (FUNNEL_VERSION, rules_id, *row))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stored_people(db: Store, instance_uuid: str, signature: str) -> list[dict[str, Any]] | None:
    """The instance's funnel_people when they were computed from inputs with `signature`, else None."""
    if get_state(db, f"funnel_inputs:{instance_uuid}") != signature:
        return None
    cursor = db.execute(
        f"SELECT {', '.join(FUNNEL_COLUMNS)} FROM funnel_people WHERE instance_uuid = ? ORDER BY person",
        [instance_uuid],
    )
    return [dict(zip(FUNNEL_COLUMNS, r, strict=True)) for r in cursor]


def write_funnel_people(
    db: Store, instance_uuid: str, rows: Sequence[Mapping[str, Any]], signature: str | None = None
) -> bool:
    """Make `rows` the instance's funnel_people unless they already are; returns whether it wrote."""
    key = f"funnel_people:{instance_uuid}"
    print_ = _fingerprint(rows)
    if get_state(db, key) == print_:
        if signature is not None and get_state(db, f"funnel_inputs:{instance_uuid}") != signature:
            with durable_write(db) as conn:
                set_state(conn, f"funnel_inputs:{instance_uuid}", signature)
        return False
    with durable_write(db) as conn:
        if signature is not None:
            set_state(conn, f"funnel_inputs:{instance_uuid}", signature)
        conn.execute("DELETE FROM funnel_people WHERE instance_uuid = ?", (instance_uuid,))
        conn.executemany(
            f"INSERT INTO funnel_people (instance_uuid, {', '.join(FUNNEL_COLUMNS)}) "
            f"VALUES (?, {', '.join('?' * len(FUNNEL_COLUMNS))})",
            [(instance_uuid, *(r.get(c) for c in FUNNEL_COLUMNS)) for r in rows],
        )
        set_state(conn, key, print_)
    return True


def drop_funnel(db: Store, instance_uuids: Sequence[str]) -> None:
    """Forget the derived quiz scores and funnel rows of these instances (rebuild)."""
    with durable_write(db) as conn:
        for uuid in instance_uuids:
            conn.execute("DELETE FROM quiz_scores WHERE instance_uuid = ?", (uuid,))
            conn.execute("DELETE FROM funnel_people WHERE instance_uuid = ?", (uuid,))
            conn.execute("DELETE FROM state WHERE key IN (?, ?)", (f"funnel_people:{uuid}", f"funnel_inputs:{uuid}"))
