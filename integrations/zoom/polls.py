"""Zoom polls and quizzes: `fetch_*` calls (HTTP only) and pure reshaping to rows.

Definitions: `GET /meetings/{id}/polls`, `GET /webinars/{id}/polls` (rate label Light); a
quiz is `poll_type` 3 and carries `right_answers`. Answers: `GET /report/meetings/{id}/polls`,
`GET /report/webinars/{id}/polls` (Heavy), one entry per participant with `question_details`.
Neither listing is paged (meetings-api.openapi.json has no page token for them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from integrations.zoom.client import HEAVY, LIGHT, ZoomClient, encode_uuid
from integrations.zoom.reports import Page, _check_kind, _items, _time_or_raw
from integrations.zoom.webhooks import text

QUIZ = 3  # poll_type of a quiz (meetings-api.openapi.json "Meeting and Webinar Polling Object")
ANONYMOUS_NAME = "Anonymous Attendee"  # what Zoom puts in name fields of anonymous answers


def _page(response, key: str) -> Page:
    return Page(
        url=response.url,
        body=response.body,
        items=_items(response.data, key, response.url),
        number=1,
        restarts=0,
        page_count=1,
        total_records=None,
    )


def poll_definitions_path(meeting_id: str, kind: str) -> str:
    """The path listing a meeting's or webinar's polls (numeric id)."""
    return f"{_check_kind(kind)}s/{encode_uuid(str(meeting_id))}/polls"


def poll_report_path(instance_uuid: str, kind: str) -> str:
    """The path of one instance's poll report (answers)."""
    return f"report/{_check_kind(kind)}s/{encode_uuid(instance_uuid)}/polls"


def fetch_poll_definitions(client: ZoomClient, meeting_id: str, kind: str) -> Page:
    """The polls and quizzes defined for a meeting or webinar (one answer, Light)."""
    return _page(client.get(poll_definitions_path(meeting_id, kind), rate_class=LIGHT), "polls")


def fetch_poll_report(client: ZoomClient, instance_uuid: str, kind: str) -> Page:
    """The poll and quiz answers of one instance (one answer, Heavy); items are participants."""
    return _page(client.get(poll_report_path(instance_uuid, kind), rate_class=HEAVY), "questions")


# -- pure reshaping -------------------------------------------------------------------------


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [v for v in (text(x) for x in value) if v is not None]


def poll_to_rows(poll: Mapping[str, Any], meeting_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A polls row and its poll_questions rows from one element of `polls` (None without an id)."""
    poll_id = text(poll.get("id"))
    if poll_id is None:
        return None, []
    poll_type = poll.get("poll_type")
    row = {
        "meeting_id": str(meeting_id),
        "poll_id": poll_id,
        "title": text(poll.get("title")),
        "poll_type": poll_type if isinstance(poll_type, int) and not isinstance(poll_type, bool) else 1,
        "anonymous": int(poll.get("anonymous") is True),
        "status": text(poll.get("status")),
    }
    questions = []
    for number, question in enumerate(poll.get("questions") or []):
        if not isinstance(question, dict):
            continue
        questions.append(
            {
                "meeting_id": str(meeting_id),
                "poll_id": poll_id,
                "number": number,
                "question": (text(question.get("name")) or "").strip(),
                "type": text(question.get("type")) or "single",
                "answers": json.dumps(_strings(question.get("answers")), ensure_ascii=False),
                "right_answers": json.dumps(_strings(question.get("right_answers")), ensure_ascii=False),
            }
        )
    return row, questions


def answer_rows(participants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """poll_answers rows from a poll report's `questions` (one row per question detail)."""
    rows = []
    for entry, participant in enumerate(participants):
        email = text(participant.get("email"))
        email = email.strip() if email else None
        name = text(participant.get("name"))
        # Anonymous polls: Zoom replaces the names with "Anonymous Attendee" and sends no email.
        anonymous = int(not email and (name or "").strip() == ANONYMOUS_NAME)
        details = participant.get("question_details") or []
        if not isinstance(details, list):
            details = []
        for detail_no, detail in enumerate(details):
            if not isinstance(detail, dict):
                continue
            rows.append(
                {
                    "entry": entry,
                    "detail": detail_no,
                    "name": name,
                    "email": email or None,
                    "anonymous": anonymous,
                    "poll_id": text(detail.get("polling_id")),
                    "question": (text(detail.get("question")) or "").strip(),
                    "answer": text(detail.get("answer")),
                    "date_time": _time_or_raw(detail.get("date_time")),
                }
            )
    return rows
