"""Polls, quiz questions, quiz answers and scores: SQL only (issue 16).

Each fetched page (definitions or an instance's poll report) is appended to the hash chain
first (store/evidence.py), then its rows replace the ones read before, in the same
transaction: the normalized rows are always those of the last stored page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from store.db import Store, durable_write
from store.evidence import FetchedPage, append_report_page

ANSWER_COLUMNS = ("entry", "detail", "name", "email", "anonymous", "poll_id", "question", "answer", "date_time")
SCORE_COLUMNS = (
    "poll_id",
    "person",
    "email",
    "name",
    "anonymous",
    "questions",
    "answered",
    "correct",
    "score_percent",
)
POLL_COLUMNS = ("poll_id", "title", "poll_type", "anonymous", "status")
QUESTION_COLUMNS = ("poll_id", "number", "question", "type", "answers", "right_answers")


def _replace_definitions(conn, meeting_id: str, raw_id: int | None, polls, questions) -> None:
    conn.execute("DELETE FROM poll_questions WHERE meeting_id = ?", (meeting_id,))
    conn.execute("DELETE FROM polls WHERE meeting_id = ?", (meeting_id,))
    conn.executemany(
        f"INSERT INTO polls (meeting_id, raw_id, {', '.join(POLL_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(meeting_id, raw_id, *(p[c] for c in POLL_COLUMNS)) for p in polls],
    )
    conn.executemany(
        # A number listed twice keeps its last copy. The table has no other unique key and
        # no trigger, so this upsert does what INSERT OR REPLACE did.
        f"INSERT INTO poll_questions (meeting_id, {', '.join(QUESTION_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (meeting_id, poll_id, number) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in QUESTION_COLUMNS if c not in ("poll_id", "number")),
        [(meeting_id, *(q[c] for c in QUESTION_COLUMNS)) for q in questions],
    )


def save_poll_definitions(
    db: Store,
    meeting_id: str,
    page: FetchedPage,
    polls: Sequence[Mapping[str, Any]],
    questions: Sequence[Mapping[str, Any]],
) -> int:
    """Store a definitions page as evidence and make its polls the meeting's; returns its raw id."""
    with durable_write(db) as conn:
        record = append_report_page(conn, page, meeting_uuid=None, meeting_id=meeting_id)
        _replace_definitions(conn, meeting_id, record.id, polls, questions)
    return record.id


def _replace_answers(conn, instance_uuid: str, raw_id: int, rows: Sequence[Mapping[str, Any]]) -> None:
    conn.execute("DELETE FROM poll_answers WHERE instance_uuid = ?", (instance_uuid,))
    conn.executemany(
        f"INSERT INTO poll_answers (instance_uuid, raw_id, {', '.join(ANSWER_COLUMNS)}) "
        f"VALUES (?, ?, {', '.join('?' * len(ANSWER_COLUMNS))})",
        [(instance_uuid, raw_id, *(r[c] for c in ANSWER_COLUMNS)) for r in rows],
    )


def save_poll_report(
    db: Store,
    instance_uuid: str,
    page: FetchedPage,
    rows: Sequence[Mapping[str, Any]],
    *,
    meeting_id: str | None = None,
    received_at: str | None = None,
) -> int:
    """Store an instance's poll report as evidence and make its answers the instance's; returns its raw id."""
    with durable_write(db) as conn:
        # Filed under the meeting number, not the instance: pages tagged with an instance
        # move its attendance fingerprint (store/derived.py), and answers change no attendance.
        # The instance is in the page's URL and body, and poll_answers.raw_id points at it.
        record = append_report_page(conn, page, meeting_uuid=None, meeting_id=meeting_id, received_at=received_at)
        _replace_answers(conn, instance_uuid, record.id, rows)
    return record.id


def quiz_questions(db: Store, meeting_id: str | None) -> list[dict[str, Any]]:
    """The questions of the meeting's quizzes (poll_type 3), right_answers as lists."""
    cursor = db.execute(
        "SELECT q.poll_id, q.number, q.question, q.type, q.right_answers FROM poll_questions q "
        "JOIN polls p ON p.meeting_id = q.meeting_id AND p.poll_id = q.poll_id "
        "WHERE q.meeting_id = ? AND p.poll_type = 3 ORDER BY q.poll_id, q.number",
        [meeting_id],
    )
    return [
        {"poll_id": r[0], "number": r[1], "question": r[2], "type": r[3], "right_answers": json.loads(r[4])}
        for r in cursor
    ]


def poll_answers(db: Store, instance_uuid: str) -> list[dict[str, Any]]:
    """Every stored answer of an instance, in report order."""
    cursor = db.execute(
        f"SELECT {', '.join(ANSWER_COLUMNS)} FROM poll_answers WHERE instance_uuid = ? ORDER BY entry, detail",
        [instance_uuid],
    )
    return [dict(zip(ANSWER_COLUMNS, r, strict=True)) for r in cursor]


def replace_quiz_scores(db: Store, instance_uuid: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Make `rows` the instance's quiz_scores (derived: recomputed whole)."""
    with durable_write(db) as conn:
        conn.execute("DELETE FROM quiz_scores WHERE instance_uuid = ?", (instance_uuid,))
        conn.executemany(
            f"INSERT INTO quiz_scores (instance_uuid, {', '.join(SCORE_COLUMNS)}) "
            f"VALUES (?, {', '.join('?' * len(SCORE_COLUMNS))})",
            [(instance_uuid, *(r[c] for c in SCORE_COLUMNS)) for r in rows],
        )


def quiz_scores(db: Store, instance_uuid: str) -> list[dict[str, Any]]:
    """The stored quiz_scores rows of an instance."""
    cursor = db.execute(
        f"SELECT {', '.join(SCORE_COLUMNS)} FROM quiz_scores WHERE instance_uuid = ? ORDER BY poll_id, person",
        [instance_uuid],
    )
    return [dict(zip(SCORE_COLUMNS, r, strict=True)) for r in cursor]
