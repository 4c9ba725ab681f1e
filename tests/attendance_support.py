"""Helpers for the attendance tests: Zoom webhook bodies, reports from the simulator, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from click.testing import CliRunner

import worker
from integrations.attendance.intervals import epoch_seconds
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import Dataset, ZoomSimulator
from integrations.zoom.client import ZoomClient
from store.db import open_db
from tests.conftest import post_event


def participant_event(
    event: str,
    uuid: str,
    meeting_id: str,
    *,
    topic: str = "Scenario",
    event_ts: int = 1_714_557_600_000,
    **participant: Any,
) -> dict[str, Any]:
    """A Zoom participant webhook (shape of meetings-webhooks.openapi.json's examples)."""
    person = {"email": "", **participant}  # Zoom sends the email key even when it is empty
    obj = {"id": meeting_id, "uuid": uuid, "host_id": "host1", "topic": topic, "type": 8, "participant": person}
    return {"event": event, "event_ts": event_ts, "payload": {"account_id": "acct", "object": obj}}


def instance_event(event: str, uuid: str, meeting_id: str, *, topic: str = "Scenario", **times: Any) -> dict[str, Any]:
    """A started or ended webhook."""
    obj = {"id": meeting_id, "uuid": uuid, "host_id": "host1", "topic": topic, "type": 8, **times}
    return {"event": event, "event_ts": 1_714_557_600_000, "payload": {"account_id": "acct", "object": obj}}


def report_row(user_id: str, name: str, join: str, leave: str, **fields: Any) -> dict[str, Any]:
    """One participant of Zoom's report (GET /report/.../participants), in Zoom's shape."""
    row = {
        "id": fields.get("participant_user_id", ""),
        "user_id": user_id,
        "name": name,
        "user_email": "",
        "registrant_id": "",
        "participant_user_id": "",
        "join_time": join,
        "leave_time": leave,
        "duration": 0,
        "failover": False,
        "status": "in_meeting",
        "customer_key": "",
        "bo_mtg_id": "",
    }
    row.update(fields)
    return row


class Scenario:
    """One instance of a meeting or webinar, fed signed webhooks and a report from the simulator."""

    def __init__(self, client, config, *, meeting_id: str, uuid: str, kind: str = "meeting", day: str = "2024-05-01"):
        self.client = client
        self.config = config
        self.meeting_id = meeting_id
        self.uuid = uuid
        self.kind = kind
        self.day = day

    def t(self, hhmm: str) -> str:
        """A time of the scenario's day: '10:05' or '10:05:30'."""
        return f"{self.day}T{hhmm if hhmm.count(':') == 2 else hhmm + ':00'}Z"

    def post(self, event: dict[str, Any]) -> None:
        response = post_event(self.client, event)
        assert response.status_code == 200, response.get_data(as_text=True)

    def started(self, at: str) -> None:
        self.post(instance_event(f"{self.kind}.started", self.uuid, self.meeting_id, start_time=self.t(at)))

    def ended(self, at: str, start: str = "10:00") -> None:
        self.post(
            instance_event(
                f"{self.kind}.ended", self.uuid, self.meeting_id, start_time=self.t(start), end_time=self.t(at)
            )
        )

    def event(self, name: str, **participant: Any) -> dict[str, Any]:
        for key in ("join_time", "leave_time", "date_time"):
            if key in participant:
                participant[key] = self.t(participant[key])
        return participant_event(f"{self.kind}.{name}", self.uuid, self.meeting_id, **participant)

    def joined(self, user_id: str, name: str, at: str, **ids: Any) -> None:
        self.post(self.event("participant_joined", user_id=user_id, user_name=name, join_time=at, **ids))

    def left(self, user_id: str, name: str, at: str, **ids: Any) -> None:
        self.post(self.event("participant_left", user_id=user_id, user_name=name, leave_time=at, **ids))

    def report(self, rows: Iterable[dict[str, Any]], registrants: Iterable[dict[str, Any]] = (), start: str = "10:00"):
        """Serve this instance's report (and registrants) from the Zoom simulator and sync it over HTTP."""
        dataset = Dataset()
        dataset.add_meeting(self.meeting_id, self.kind, "Scenario")
        rows = [{**r, "join_time": self.t(r["join_time"]), "leave_time": self.t(r["leave_time"])} for r in rows]
        for r in rows:  # seconds, as documented (a zero would read as "not processed yet")
            r["duration"] = epoch_seconds(r["leave_time"]) - epoch_seconds(r["join_time"])
        dataset.add_instance(self.meeting_id, self.uuid, self.t(start), rows)
        dataset.registrants[self.meeting_id] = list(registrants)
        with ZoomSimulator(dataset) as zoom:
            client = ZoomClient(
                **zoom.client_settings(),
                requests_per_second=1000,
                max_retries=0,
            )
            db = open_db(self.config.database_path)
            try:
                return sync_meeting(db, client, self.meeting_id, instance_uuid=self.uuid, kind=self.kind)
            finally:
                client.close()
                db.close()


def registrant(registrant_id: str, email: str, first: str, last: str, status: str = "approved") -> dict[str, Any]:
    """One webinar registrant, in Zoom's shape."""
    return {
        "id": registrant_id,
        "email": email,
        "first_name": first,
        "last_name": last,
        "status": status,
        "create_time": "2024-04-20T09:00:00Z",
    }


def cli(config, *args: str) -> Any:
    """Run `worker.py ARGS` against the test database; JSON output parsed (text for csv/table)."""
    env = {"DATABASE_URL": f"sqlite:///{config.database_path}", "API_TOKEN": "", "ZOOM_WEBHOOK_SECRET_TOKEN": "x"}
    result = CliRunner().invoke(worker.cli, list(args), env=env, catch_exceptions=False)
    if result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.output}")
    if "--format" in args and args[args.index("--format") + 1] != "json":
        return result.output
    return json.loads(result.output)


def cli_error(config, *args: str) -> str:
    """Run a command that must fail; returns its output (the one-line error)."""
    env = {"DATABASE_URL": f"sqlite:///{config.database_path}"}
    result = CliRunner().invoke(worker.cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code != 0, result.output
    return result.output


def by_key(attendees: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["person_key"]: a for a in attendees}


def table_dump(db, tables=("attendance_instances", "people", "attendance", "attendance_sessions")) -> dict:
    """Every row of the derived tables, ordered: for row-for-row comparisons."""
    return {t: [tuple(r) for r in db.execute(f"SELECT * FROM {t} ORDER BY 1, 2, 3")] for t in tables}
