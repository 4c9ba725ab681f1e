"""Parse Zoom webhook bodies into plain rows. Pure: no I/O, never trusts a field's type.

Shapes: ../shared/zoom/NOTES.md ("Webhooks") and meetings-webhooks.openapi.json.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from integrations.zoom import jsontext


class ZoomPayloadError(Exception):
    "A signed webhook body that is not a Zoom event we can read"


PARTICIPANT_EVENTS = frozenset(
    f"{kind}.{name}"
    for kind in ("meeting", "webinar")
    for name in (
        "participant_joined",
        "participant_left",
        "participant_joined_waiting_room",
        "participant_left_waiting_room",
        "participant_put_in_waiting_room",
        "participant_admitted",
        "participant_joined_breakout_room",
        "participant_left_breakout_room",
        "participant_bind",
    )
)
INSTANCE_EVENTS = frozenset(f"{k}.{n}" for k in ("meeting", "webinar") for n in ("started", "ended"))
URL_VALIDATION = "endpoint.url_validation"

PARTICIPANT_FIELDS = (
    "user_id",
    "participant_uuid",
    "participant_user_id",
    "registrant_id",
    "email",
    "user_name",
    "phone_number",
    "customer_key",
    "leave_reason",
)
TIME_FIELDS = ("join_time", "leave_time", "date_time")
MAX_EVENT_TS = 253402300799999  # epoch milliseconds of 9999-12-31T23:59:59.999Z


@dataclass
class ParsedEvent:
    """What one delivery says, as plain values for `store/`."""

    event: str
    kind: str | None = None
    meeting_id: str | None = None
    instance_uuid: str | None = None
    topic: str | None = None
    host_id: str | None = None
    event_ts: int | None = None
    start_time: str | None = None
    end_time: str | None = None
    participant: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def is_participant_event(self) -> bool:
        return self.event in PARTICIPANT_EVENTS

    @property
    def is_instance_event(self) -> bool:
        return self.event in INSTANCE_EVENTS


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a body as a JSON object or raise ZoomPayloadError saying why."""
    try:
        data = jsontext.loads(body)
    except UnicodeDecodeError as e:
        raise ZoomPayloadError(f"body is not UTF-8: {e}") from None
    except (ValueError, RecursionError) as e:
        raise ZoomPayloadError(f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ZoomPayloadError(f"body is JSON {type(data).__name__}, not an object")
    return data


def text(value: Any) -> str | None:
    """A string field as Zoom sends it: strings as they are, numbers as text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, int):
        return str(value)
    return None


def parse_time(value: Any) -> str | None:
    """Zoom's UTC time (`...Z`, maybe fractional) as canonical ISO 8601 UTC, or None.

    Raises ValueError for a non-empty value that is not a time.
    """
    raw = text(value)
    if raw is None:
        return None
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    parsed = parsed.astimezone(UTC)
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if parsed.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return parsed.strftime(fmt)


def event_name(data: dict[str, Any]) -> str:
    """The `event` field, or ZoomPayloadError."""
    name = data.get("event")
    if not isinstance(name, str) or not name:
        raise ZoomPayloadError("missing or non-string 'event' field")
    return name


def url_validation_token(data: dict[str, Any]) -> str:
    """The `plainToken` of an `endpoint.url_validation` body, or ZoomPayloadError."""
    payload = data.get("payload")
    token = payload.get("plainToken") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token:
        raise ZoomPayloadError("endpoint.url_validation without payload.plainToken")
    return token


def _times(source: dict[str, Any], names: tuple[str, ...], warnings: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = parse_time(source.get(name))
        except (ValueError, OverflowError):
            warnings.append(f"{name} is not a time: {str(source.get(name))[:80]!r}")
            out[name] = None
    return out


def parse_event(body: bytes) -> ParsedEvent:
    """Parse one delivery. Raises ZoomPayloadError when the body cannot be read at all."""
    data = parse_json(body)
    name = event_name(data)
    parsed = ParsedEvent(event=name, kind=name.split(".", 1)[0] if "." in name else None)
    event_ts = data.get("event_ts")
    if isinstance(event_ts, int) and not isinstance(event_ts, bool):
        # Out of range it overflowed SQLite's INTEGER and datetime, stalling normalization (issue 7).
        if 0 <= event_ts <= MAX_EVENT_TS:
            parsed.event_ts = event_ts
        else:
            parsed.warnings.append(f"event_ts out of range: {str(event_ts)[:40]}")
    payload = data.get("payload")
    obj = payload.get("object") if isinstance(payload, dict) else None
    if isinstance(obj, dict):
        parsed.meeting_id = text(obj.get("id"))
        parsed.instance_uuid = text(obj.get("uuid"))
        parsed.topic = text(obj.get("topic"))
        parsed.host_id = text(obj.get("host_id"))
    if not (parsed.is_participant_event or parsed.is_instance_event):
        return parsed  # stored raw, acknowledged, nothing more to normalize
    if not isinstance(obj, dict):
        raise ZoomPayloadError(f"{name}: missing payload.object")
    if parsed.instance_uuid is None:
        raise ZoomPayloadError(f"{name}: missing payload.object.uuid (the instance)")
    times = _times(obj, ("start_time", "end_time"), parsed.warnings)
    parsed.start_time, parsed.end_time = times["start_time"], times["end_time"]

    if parsed.is_participant_event:
        person = obj.get("participant")
        if not isinstance(person, dict):
            raise ZoomPayloadError(f"{name}: missing payload.object.participant")
        row: dict[str, Any] = {f: text(person.get(f)) for f in PARTICIPANT_FIELDS}
        row.update(_times(person, TIME_FIELDS, parsed.warnings))
        if row["email"]:
            row["email"] = row["email"].strip()
        parsed.participant = row
    return parsed


def participant_event_row(parsed: ParsedEvent) -> dict[str, Any]:
    """The participant_events row for a parsed participant event."""
    assert parsed.participant is not None
    return {
        "event": parsed.event,
        "kind": parsed.kind,
        "meeting_id": parsed.meeting_id,
        "instance_uuid": parsed.instance_uuid,
        "topic": parsed.topic,
        "event_ts": parsed.event_ts,
        **parsed.participant,
    }
