"""The webhook deliveries Zoom would send for a simulated instance, for the demo, tests and
benchmarks. Pure: a `Dataset` (integrations/simulator/zoom_api.py) in, bodies out.

One join and one leave per report row; some deliveries marked lost, as Zoom loses them."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.simulator.zoom_api import Dataset

HOST_ID = "x1yCzABCDEfg23HiJKl4mN"
ACCOUNT_ID = "SimulatedAccount000001"


@dataclass(frozen=True)
class SimulatedDelivery:
    """One webhook delivery: when Zoom sends it, what, and whether it ever arrives."""

    at: datetime
    event: str
    body: bytes
    lost: bool = False


def parse_iso(text: str) -> datetime:
    """A simulator time (`YYYY-MM-DDTHH:MM:SSZ`) as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def instance_deliveries(
    dataset: Dataset, meeting_id: str, uuid: str, *, lost: float = 0.01, seed: int = 1
) -> list[SimulatedDelivery]:
    """Every delivery for instance `uuid` of `meeting_id`, in the order Zoom sends them."""
    rng = random.Random(seed)
    meeting = dataset.meetings[str(meeting_id)]
    kind = meeting["kind"]
    instance = next(i for i in dataset.instances[str(meeting_id)] if i["uuid"] == uuid)
    rows = dataset.participants[uuid]
    start = parse_iso(instance["start_time"])
    end = max([parse_iso(r["leave_time"]) for r in rows if r.get("leave_time")] + [start + timedelta(minutes=1)])
    obj = {
        "id": str(meeting_id),
        "uuid": uuid,
        "host_id": HOST_ID,
        "topic": meeting["topic"],
        "type": 5 if kind == "webinar" else 2,
        "start_time": _iso(start),
        "timezone": "UTC",
        "duration": int((end - start).total_seconds() // 60),
    }
    deliveries = [_delivery(start, f"{kind}.started", obj)]
    for row in rows:
        if row.get("status") == "in_waiting_room" and kind == "webinar":
            continue
        participant = _participant(row)
        joined, left = parse_iso(row["join_time"]), parse_iso(row["leave_time"])
        deliveries.append(
            _delivery(
                joined,
                f"{kind}.participant_joined",
                {**obj, "participant": {**participant, "join_time": row["join_time"]}},
                rng.random() < lost,
            )
        )
        leave = {**participant, "leave_time": row["leave_time"], "leave_reason": "left the webinar."}
        deliveries.append(
            _delivery(left, f"{kind}.participant_left", {**obj, "participant": leave}, rng.random() < lost)
        )
    deliveries.append(_delivery(end, f"{kind}.ended", {**obj, "end_time": _iso(end)}))
    order = {"started": 0, "ended": 2}
    deliveries.sort(key=lambda d: (d.at, order.get(d.event.rsplit(".", 1)[1], 1)))
    return deliveries


def _participant(row: dict[str, Any]) -> dict[str, Any]:
    # One connection, one participant_uuid: Zoom gives a rejoin a new one (NOTES.md).
    connection = hashlib.sha1(f"{row['user_id']}:{row['join_time']}".encode()).hexdigest()[:22]
    return {
        "user_id": row["user_id"],
        "user_name": row["name"],
        "id": row.get("participant_user_id") or "",
        "participant_uuid": connection,
        "email": row.get("user_email") or "",
        "registrant_id": row.get("registrant_id") or "",
        "participant_user_id": row.get("participant_user_id") or "",
        "customer_key": row.get("customer_key") or "",
        "phone_number": "",
    }


def _delivery(at: datetime, event: str, obj: dict[str, Any], lost: bool = False) -> SimulatedDelivery:
    event_ts = int(at.timestamp() * 1000)
    body = {"event": event, "event_ts": event_ts, "payload": {"account_id": ACCOUNT_ID, "object": obj}}
    return SimulatedDelivery(at, event, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), lost)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
