"""Zoom report listings: `fetch_*` generators (HTTP, paging) and pure reshaping to rows.

Facts: ../shared/zoom/NOTES.md ("Participant reports", "Known trouble"). Paging always
uses `page_size=300` and `next_page_token`, never page numbers: integrations that read one
page, use page numbers or the default size of 30 silently drop people.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from integrations.zoom.client import (
    PageTokenExpired,
    PaginationError,
    ZoomApiError,
    ZoomClient,
    ZoomUnavailable,
    encode_uuid,
)
from integrations.zoom.webhooks import parse_time, text
from store.reports import REPORT_FIELDS

log = logging.getLogger(__name__)

PAGE_SIZE = 300  # Zoom's maximum for these endpoints (the default, 30, is what drops people)
MAX_RESTARTS = 3  # listings restarted after an expired page token before giving up
MAX_PAGES = 5_000  # 1.5 million rows: beyond any real report, so a runaway listing stops
KINDS = ("meeting", "webinar")
REGISTRANT_STATUSES = ("approved", "pending", "denied")


@dataclass(frozen=True)
class Page:
    """One answer of a listing, kept byte for byte as evidence."""

    url: str
    body: bytes
    items: list[dict[str, Any]]
    number: int  # 1-based within this pass of the listing
    restarts: int  # how many times the listing started over (expired page token)
    page_count: int | None
    total_records: int | None


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'meeting' or 'webinar', got {kind!r}")
    return kind


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _items(data: Mapping[str, Any], key: str, url: str) -> list[dict[str, Any]]:
    items = data.get(key, [])
    if items is None:
        return []
    if not isinstance(items, list):
        raise ZoomUnavailable(f"Zoom's answer from {url.split('?')[0]} has no '{key}' list")
    return [item for item in items if isinstance(item, dict)]


def fetch_pages(
    client: ZoomClient,
    path: str,
    items_key: str,
    params: Mapping[str, Any] | None = None,
    *,
    max_restarts: int = MAX_RESTARTS,
    max_pages: int = MAX_PAGES,
) -> Iterator[Page]:
    """Every page of a token-paginated listing; starts over when a page token expires."""
    restarts = 0
    while True:
        token = ""
        seen: set[str] = set()
        number = 0
        try:
            while True:
                query = {**(params or {}), "page_size": PAGE_SIZE}
                if token:
                    query["next_page_token"] = token
                response = client.get(path, query)
                number += 1
                data = response.data
                yield Page(
                    url=response.url,
                    body=response.body,
                    items=_items(data, items_key, response.url),
                    number=number,
                    restarts=restarts,
                    page_count=_int_or_none(data.get("page_count")),
                    total_records=_int_or_none(data.get("total_records")),
                )
                token = data.get("next_page_token") or ""
                if not isinstance(token, str) or not token:
                    return
                if token in seen:
                    raise PaginationError(f"Zoom returned the same next_page_token twice on {path}: listing stopped")
                if number >= max_pages:
                    raise PaginationError(f"{path} still had more pages after {max_pages}: listing stopped")
                seen.add(token)
        except ZoomApiError as e:
            # Zoom: 400, code 300 "The next page token is invalid or expired." (15-minute tokens)
            expired = isinstance(e, PageTokenExpired) or (bool(token) and e.status == 400 and e.code == 300)
            if not expired or restarts >= max_restarts:
                raise
            restarts += 1
            log.warning(
                "page token expired on %s after %d pages: starting the listing again (%d/%d)",
                path,
                number,
                restarts,
                max_restarts,
            )


def participants_path(instance_uuid: str, kind: str) -> str:
    """The report path of one meeting or webinar instance."""
    return f"report/{_check_kind(kind)}s/{encode_uuid(instance_uuid)}/participants"


def fetch_participants(client: ZoomClient, instance_uuid: str, kind: str) -> Iterator[Page]:
    """Every page of an instance's participant report (with registrant ids)."""
    return fetch_pages(
        client, participants_path(instance_uuid, kind), "participants", {"include_fields": "registrant_id"}
    )


def fetch_instances(client: ZoomClient, meeting_id: str, kind: str) -> Page:
    """The past instances of a meeting or webinar (one answer; Zoom does not page it)."""
    path = f"past_{_check_kind(kind)}s/{encode_uuid(meeting_id)}/instances"
    response = client.get(path)
    return Page(
        url=response.url,
        body=response.body,
        items=_items(response.data, f"{kind}s", response.url),
        number=1,
        restarts=0,
        page_count=1,
        total_records=None,
    )


def fetch_registrants(client: ZoomClient, webinar_id: str, status: str) -> Iterator[Page]:
    """Every page of a webinar's registrants with one status (approved, pending, denied)."""
    if status not in REGISTRANT_STATUSES:
        raise ValueError(f"registrant status must be one of {REGISTRANT_STATUSES}, got {status!r}")
    return fetch_pages(client, f"webinars/{encode_uuid(webinar_id)}/registrants", "registrants", {"status": status})


# -- pure reshaping -------------------------------------------------------------------------


_CANONICAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _time_or_raw(value: Any) -> str | None:
    if isinstance(value, str) and _CANONICAL_TIME.fullmatch(value):
        return value  # already canonical: most of Zoom's times, and 2 per row of 60,000
    # A report row is evidence: an unreadable time is kept as Zoom sent it, not dropped.
    try:
        return parse_time(value)
    except (ValueError, OverflowError):
        return text(value)


def row_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 of a row's canonical JSON: the same row in a later fetch hashes the same."""
    canonical = json.dumps({k: row.get(k) for k in REPORT_FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def participant_to_row(participant: Mapping[str, Any]) -> dict[str, Any]:
    """A report_rows row from one element of a report's `participants`."""
    duration = participant.get("duration")
    failover = participant.get("failover")
    email = text(participant.get("user_email"))
    row: dict[str, Any] = {
        "user_id": text(participant.get("user_id")),
        "participant_user_id": text(participant.get("participant_user_id")),
        "registrant_id": text(participant.get("registrant_id")),
        "name": text(participant.get("name")),
        "user_email": email.strip() if email else None,
        "join_time": _time_or_raw(participant.get("join_time")),
        "leave_time": _time_or_raw(participant.get("leave_time")),
        # NOTES.md: documented as seconds, but compute attendance from join/leave times.
        "duration": int(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None,
        "status": text(participant.get("status")),
        "bo_mtg_id": text(participant.get("bo_mtg_id")),
        "customer_key": text(participant.get("customer_key")),
        "failover": int(failover) if isinstance(failover, bool) else None,
    }
    row["row_hash"] = row_hash(row)
    return row


def looks_unprocessed(row: Mapping[str, Any]) -> bool:
    """True for a row Zoom has not finished: zero duration while in the meeting (NOTES.md)."""
    return row.get("duration") == 0 and row.get("status") != "in_waiting_room"


def registrant_to_row(
    registrant: Mapping[str, Any], meeting_id: str, *, status: str | None = None
) -> dict[str, Any] | None:
    """A registrants row from one element of `registrants` (None without an id)."""
    registrant_id = text(registrant.get("id"))
    if registrant_id is None:
        return None
    first, last = text(registrant.get("first_name")), text(registrant.get("last_name"))
    email = text(registrant.get("email"))
    return {
        "meeting_id": str(meeting_id),
        "registrant_id": registrant_id,
        "email": email.strip() if email else None,
        "first_name": first,
        "last_name": last,
        "name": " ".join(p for p in (first, last) if p) or None,
        "status": text(registrant.get("status")) or status,
        "create_time": _time_or_raw(registrant.get("create_time")),
    }


def instance_to_row(instance: Mapping[str, Any], meeting_id: str, kind: str) -> dict[str, Any] | None:
    """An instances row from one element of a past_* instances listing (None without a uuid)."""
    uuid = text(instance.get("uuid"))
    if uuid is None:
        return None
    return {
        "instance_uuid": uuid,
        "meeting_id": str(meeting_id),
        "kind": _check_kind(kind),
        "start_time": _time_or_raw(instance.get("start_time")),
    }
