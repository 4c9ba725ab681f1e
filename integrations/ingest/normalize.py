"""Turn stored webhook deliveries into normalized rows, outside the request path."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from integrations.ingest.backlog import backlog
from integrations.zoom.webhooks import ParsedEvent, ZoomPayloadError, parse_event, participant_event_row
from store.db import Store
from store.events import NormalizedDelivery, pending_deliveries, save_normalized

log = logging.getLogger(__name__)


def normalize_delivery(raw_id: int, body: bytes) -> NormalizedDelivery:
    """Parse one raw delivery into what `store.events.save_normalized` writes."""
    try:
        parsed = parse_event(body)
    except ZoomPayloadError as e:
        return NormalizedDelivery(raw_id, parse_error=str(e))
    except Exception as e:  # hostile input must never stop the queue; keep it visible
        log.exception("unexpected error parsing delivery %s", raw_id)
        return NormalizedDelivery(raw_id, parse_error=f"unexpected parse failure: {type(e).__name__}")
    return NormalizedDelivery(
        raw_id,
        event=parsed.event,
        meeting_id=parsed.meeting_id,
        meeting_uuid=parsed.instance_uuid,
        parse_error="; ".join(parsed.warnings) or None,
        participant_rows=[participant_event_row(parsed)] if parsed.participant is not None else [],
        instance=instance_facts(parsed) if parsed.is_participant_event or parsed.is_instance_event else None,
    )


def instance_facts(parsed: ParsedEvent) -> dict:
    """What an event tells about its instance, for `store.events.upsert_instance`."""
    facts = {
        "instance_uuid": parsed.instance_uuid,
        "meeting_id": parsed.meeting_id,
        "kind": parsed.kind,
        "topic": parsed.topic,
        "host_id": parsed.host_id,
        "event_ts": parsed.event_ts,
        "start_time": parsed.start_time,
    }
    if parsed.event.endswith(".started"):
        facts["started"] = True
    if parsed.event.endswith(".ended"):
        facts["ended"] = True
        facts["end_time"] = parsed.end_time or _ms_to_iso(parsed.event_ts)
    return facts


def _ms_to_iso(ms: int | None) -> str | None:
    if ms is None:
        return None

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_pending(db: Store, *, batch: int = 500) -> list[str]:
    """Import spooled deliveries (chain the intake's on PostgreSQL), then normalize every
    stored delivery not yet normalized.

    Returns the affected instance uuids. Every reader catches up through here, so a read
    sees each delivery that was answered 200, even one a stopped web process left waiting.
    """
    backlog(db).catch_up(db)
    affected: set[str] = set()
    while True:
        rows = pending_deliveries(db, limit=batch)
        if not rows:
            return sorted(affected)
        affected.update(save_normalized(db, [normalize_delivery(i, bytes(b)) for i, b in rows]))
