"""What the audit tests share (issue 5): Zoom-shaped deliveries and report pages, stored for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from store.db import durable_write
from store.evidence import RawPage, append_report_page

ROOT = Path(__file__).resolve().parents[1]
MEETING_ID = "81234567890"
INSTANCE = "4444AAAiAAAAAiAiAiiAii=="
OTHER_INSTANCE = "/7777ZZZ//zzzzZzZzZZzZ=="


def joined(
    n: int, *, instance: str = INSTANCE, name: str | None = None, email: str | None = None, meeting_id: str = MEETING_ID
) -> dict:
    """A `webinar.participant_joined` event shaped like Zoom's example."""
    return {
        "event": "webinar.participant_joined",
        "event_ts": 1714575600000 + n,
        "payload": {
            "account_id": "AAAAAABBBB",
            "object": {
                "id": meeting_id,
                "uuid": instance,
                "host_id": "x1yCzABCDEfg23HiJKl4mN",
                "topic": "Record attempt webinar",
                "type": 5,
                "start_time": "2024-05-01T15:00:00Z",
                "duration": 120,
                "timezone": "America/Los_Angeles",
                "participant": {
                    "user_id": str(16778240 + n),
                    "user_name": name if name is not None else f"Attendee {n}",
                    "id": "iFxeBPYun6SAiWUzBcEkX",
                    "join_time": "2024-05-01T15:01:00Z",
                    "email": email if email is not None else f"attendee{n}@example.com",
                    "registrant_id": f"reg-{n}",
                    "participant_user_id": "",
                    "participant_uuid": f"pu-{n}",
                    "customer_key": "",
                    "phone_number": "",
                },
            },
        },
    }


def report_page(rows: list[dict], *, token: str = "") -> bytes:
    """A participant report page as Zoom returns it, pretty-printed (so rows span lines)."""
    page = {
        "page_count": 1,
        "page_size": 300,
        "total_records": len(rows),
        "next_page_token": token,
        "participants": rows,
    }
    return json.dumps(page, indent=2).encode()


def report_row(n: int, **overrides) -> dict:
    """One participant report row."""
    row = {
        "id": "",
        "user_id": str(33554432 + n),
        "name": f"Reported {n}",
        "user_email": f"reported{n}@example.com",
        "registrant_id": f"reg-{n}",
        "participant_user_id": "",
        "join_time": "2024-05-01T15:02:00Z",
        "leave_time": "2024-05-01T16:30:00Z",
        "duration": 5280,
        "failover": False,
        "status": "in_meeting",
        "customer_key": "",
        "bo_mtg_id": "",
    }
    row.update(overrides)
    return row


def store_report_page(db, body: bytes, *, instance: str = INSTANCE, kind: str = "webinars") -> int:
    """Store a fetched page as the report poller does; returns its record id."""
    with durable_write(db) as conn:
        page = RawPage(f"https://api.zoom.us/v2/report/{kind}/{instance}/participants", body)
        return append_report_page(conn, page, meeting_uuid=instance).id


def run_worker(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python worker.py ARGS` as a user runs it."""
    return subprocess.run([sys.executable, "worker.py", *args], cwd=ROOT, env=env, capture_output=True, timeout=timeout)


def jsonl(data: bytes) -> list[dict]:
    """Decode JSON Lines, asserting every line is one record."""
    assert data.endswith(b"\n") or not data
    return [json.loads(line) for line in data.split(b"\n")[:-1]]
