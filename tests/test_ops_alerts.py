"""The alerts the service raises itself (issue 18), raised and cleared against a simulated live
webinar, with a real HTTP receiver taking the notices. Time is time-machine's (deliveries'
received_at and the checker's clock move together) or the checker's injected clock."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine

from integrations.derived.refresh import refresh_instances
from integrations.ingest.normalize import normalize_pending
from integrations.ops.alerts import AlertChecker
from integrations.reports.sync import pause_for_daily_limit, sync_instance
from integrations.simulator.zoom_api import Dataset, ZoomSimulator
from integrations.web import create_app
from integrations.zoom.client import ZoomError
from store.db import open_db
from tests.conftest import API_TOKEN, make_config, post_event
from tests.zoom_support import report_row, simulator_client

DETAILS = {"Authorization": f"Bearer {API_TOKEN}"}

UUID = "live-alerts=="


class Receiver:
    """An incoming-webhook endpoint (Slack's or Teams' shape) on 127.0.0.1: keeps each text."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(500)
                else:
                    receiver.texts.append(body["text"])
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, prefix: str) -> int:
        return sum(text.startswith(prefix) for text in self.texts)


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.stop()


class Clock:
    def __init__(self, at: datetime):
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def joined(n: int) -> dict:
    return {
        "event": "webinar.participant_joined",
        "event_ts": 1764237600000 + n,
        "payload": {
            "object": {
                "id": "81234567890",
                "uuid": UUID,
                "participant": {"user_id": str(n), "user_name": f"Teacher {n}", "join_time": "2026-11-27T09:00:01Z"},
            }
        },
    }


def catch_up(db) -> None:
    """What the worker does every second: normalize, refresh the derived tables."""
    normalize_pending(db)
    refresh_instances(db, [UUID])


def test_every_alert_is_raised_and_cleared_once(tmp_path, receiver, caplog):
    config = make_config(tmp_path, ALERT_WEBHOOK_URL=receiver.url, ALERT_SILENCE_MINUTES="5")
    with time_machine.travel(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), tick=False) as traveller:
        app = create_app(config)
        client = app.test_client()
        db = open_db(config.database_path)
        checker = AlertChecker(config)
        # A webinar goes live: started, people join.
        started = {
            "event": "webinar.started",
            "event_ts": 1772366400000,
            "payload": {"object": {"id": "81234567890", "uuid": UUID, "start_time": "2026-03-01T12:00:00Z"}},
        }
        assert post_event(client, started).status_code == 200
        for n in range(3):
            assert post_event(client, joined(n)).status_code == 200
        catch_up(db)
        traveller.shift(timedelta(minutes=1))
        assert checker.check(db) == []
        assert client.get("/healthz").json["status"] == "ok" and receiver.texts == []

        # A delivery arrives but waits: not normalized two minutes later (the worker is down).
        assert post_event(client, joined(3)).status_code == 200
        traveller.shift(timedelta(minutes=2))
        assert [c.alert for c in checker.check(db)] == ["import_lag"]
        assert receiver.count("[attendance-worker] ALERT import_lag: deliveries wait 120s") == 1
        catch_up(db)  # the worker is back
        assert checker.check(db) == []
        assert receiver.count("[attendance-worker] RESOLVED import_lag") == 1

        # Deliveries stop (the last came two minutes ago): past ALERT_SILENCE_MINUTES the alert is everywhere.
        traveller.shift(timedelta(minutes=2))
        assert checker.check(db) == []  # 4 minutes of silence: under the bound
        traveller.shift(timedelta(minutes=2))
        receiver.fail_next = 1  # the hook is down for the first try: the notice goes at the next check
        with caplog.at_level(logging.WARNING, logger="integrations.ops.alerts"):
            assert [c.alert for c in checker.check(db)] == ["silence"]
        assert any(r.levelno == logging.WARNING and "ALERT silence" in r.getMessage() for r in caplog.records)
        assert client.get("/healthz").json == {"status": "degraded"}  # details only with the token (issue 14)
        health = client.get("/healthz", headers=DETAILS)
        assert health.status_code == 200 and health.json["status"] == "degraded"
        assert [a["alert"] for a in health.json["alerts"]] == ["silence"]
        assert "no webhook delivery for 6.0 min" in health.json["alerts"][0]["reason"]
        assert "with 4 people in it" in health.json["alerts"][0]["reason"]
        assert receiver.count("[attendance-worker] ALERT silence") == 0
        metrics = client.get("/metrics").get_data(as_text=True)
        assert 'attendance_alert_active{alert="silence"} 1.0' in metrics
        assert "zoom_live_meeting_seconds_since_last_delivery{" in metrics
        traveller.shift(timedelta(minutes=1))
        checker.check(db)
        assert receiver.count("[attendance-worker] ALERT silence: no webhook delivery for 7.0 min") == 1
        # Once per incident: neither the next check nor a restarted worker sends it again.
        checker.check(db)
        AlertChecker(config).check(db)
        assert receiver.count("[attendance-worker] ALERT silence") == 1

        # Deliveries come back: the silence ends, one recovery notice.
        assert post_event(client, joined(4)).status_code == 200
        catch_up(db)
        assert checker.check(db) == []
        checker.check(db)
        assert receiver.count("[attendance-worker] RESOLVED silence") == 1
        health = client.get("/healthz", headers=DETAILS).json
        assert health["status"] == "ok" and health["alerts"] == []
        # The webinar ends: no longer live, its silence is no alert any more.
        ended = {
            "event": "webinar.ended",
            "event_ts": 1772367400000,
            "payload": {"object": {"id": "81234567890", "uuid": UUID, "end_time": "2026-03-01T12:20:00Z"}},
        }
        assert post_event(client, ended).status_code == 200
        catch_up(db)

        # Report syncs fail again and again, then one succeeds.
        dataset = Dataset()
        dataset.add_meeting("999", "meeting")
        dataset.add_instance("999", "past==", "2026-01-15T15:00:00Z", [report_row(1)])
        with ZoomSimulator(dataset) as sim, simulator_client(sim, max_retries=0) as zoom:
            sim.add_fault("participants", "server_error", times=3)
            for _ in range(3):
                with pytest.raises(ZoomError, match="HTTP 500"):
                    sync_instance(db, zoom, "past==", kind="meeting")
            assert [c.alert for c in checker.check(db)] == ["report_sync_failing"]
            sync_instance(db, zoom, "past==", kind="meeting")
        assert checker.check(db) == []

        # Zoom's daily limit is reached: no budget left until it lifts.
        pause_for_daily_limit(db, datetime.now(UTC) + timedelta(hours=1))
        assert [c.alert for c in checker.check(db)] == ["api_budget_low"]
        traveller.shift(timedelta(hours=2))
        assert checker.check(db) == []

        # The disk fills past the bound (here: the bound rises past what is free), then it is fine.
        full = AlertChecker(make_config(tmp_path, ALERT_WEBHOOK_URL=receiver.url, ALERT_MIN_FREE_DISK_MB="1e12"))
        assert [c.alert for c in full.check(db)] == ["disk_low"]
        assert client.get("/healthz", headers=DETAILS).json["alerts"][0]["alert"] == "disk_low"
        assert checker.check(db) == []

    for alert in ("silence", "import_lag", "report_sync_failing", "api_budget_low", "disk_low"):
        assert receiver.count(f"[attendance-worker] ALERT {alert}:") == 1, (alert, receiver.texts)
        assert receiver.count(f"[attendance-worker] RESOLVED {alert}:") == 1, (alert, receiver.texts)
    assert len(receiver.texts) == 10
    db.close()


def test_a_new_incident_after_recovery_is_notified_again(tmp_path, receiver):
    config = make_config(tmp_path, ALERT_WEBHOOK_URL=receiver.url)
    create_app(config)
    db = open_db(config.database_path)
    clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    checker = AlertChecker(config, now=clock)
    for _ in range(2):
        pause_for_daily_limit(db, clock.at + timedelta(minutes=30))
        checker.check(db)
        clock.at += timedelta(hours=1)
        checker.check(db)
    assert receiver.count("[attendance-worker] ALERT api_budget_low") == 2
    assert receiver.count("[attendance-worker] RESOLVED api_budget_low") == 2
    db.close()


def test_without_a_hook_alerts_still_log_and_show_in_healthz(tmp_path, client, config, caplog):
    db = open_db(config.database_path)
    clock = Clock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    pause_for_daily_limit(db, clock.at + timedelta(minutes=30))
    with caplog.at_level(logging.WARNING, logger="integrations.ops.alerts"):
        AlertChecker(config, now=clock).check(db)
    assert "ALERT api_budget_low: 0 of 30000 daily report API calls left" in caplog.text
    assert client.get("/healthz").json["status"] == "degraded"
    db.close()
