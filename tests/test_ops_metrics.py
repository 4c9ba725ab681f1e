"""GET /metrics (issue 18): counts summed over gunicorn's workers, state read at scrape time."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from integrations.ops.logs import JsonFormatter
from integrations.ops.metrics import api_endpoint, event_label
from integrations.simulator.zoom_api import ZoomSimulator
from tests.conftest import make_config, post_event
from tests.fault_support import free_port as pick_port
from tests.fault_support import (
    get,
    participant_body,
    post_signed,
    process_env,
    start_procfile,
    start_web,
    web_command,
)
from tests.zoom_support import simulator_client

METRICS_TOKEN = "m" * 8 + "-metrics-token-for-tests-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def total(scrape: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in scrape.items() if n == name and set(labels.items()) <= set(ls))


def scrape(port: int) -> dict:
    status, body = get(port, "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200, body
    return samples(body.decode())


def allocated(metrics_dir: str, pid: int) -> bool:
    """The worker's counter and histogram files exist, with every block of their size on disk."""
    for kind in ("counter", "histogram"):
        try:
            stat = os.stat(os.path.join(metrics_dir, f"{kind}_{pid}.db"))
        except FileNotFoundError:
            return False
        if not (stat.st_size > 0 and stat.st_blocks * 512 >= stat.st_size):
            return False
    return True


def worker_pids(master: int) -> set[int]:
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        children.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return children


def test_deliveries_summed_across_two_gunicorn_workers_equal_those_sent(tmp_path):
    database = tmp_path / "attendance.db"
    proc = start_web(database, METRICS_TOKEN=METRICS_TOKEN, WEBHOOK_IMPORT_DELAY_SECONDS="0.2")
    port = proc.port
    metrics_dir = str(database) + "-metrics"
    try:
        # start_web returns once one worker answers: the second may still be booting and
        # making its files (it failed 2 runs in 3 on a quiet machine without this wait).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            workers = worker_pids(proc.pid)
            if len(workers) == 2 and all(allocated(metrics_dir, pid) for pid in workers):
                break
            time.sleep(0.1)
        assert len(workers) == 2, proc.log()
        # Each worker's files exist before any request, their blocks allocated: a full disk
        # later cannot SIGBUS a worker through a sparse page (test_fault_storage fills it).
        for pid in workers:
            for kind in ("counter", "histogram"):
                stat = os.stat(os.path.join(metrics_dir, f"{kind}_{pid}.db"))
                assert stat.st_size > 0 and stat.st_blocks * 512 >= stat.st_size, (kind, stat)
        bodies = [participant_body(n, run="metrics") for n in range(400)]
        sent = {"stored": 0, "duplicate": 0, "rejected": 0}

        def send(i: int) -> int:
            if i % 10 == 9:  # every tenth: a bad signature
                return post_signed(port, bodies[i], secret="not-the-secret")[0]
            return post_signed(port, bodies[i])[0]

        # Many connections at once until both workers have answered some (each writes its own file).
        answered: list[int] = []
        with ThreadPoolExecutor(16) as pool:
            answered += pool.map(send, range(len(bodies)))
        statuses = {s: answered.count(s) for s in set(answered)}
        assert statuses == {200: 360, 401: 40}
        sent["stored"], sent["rejected"] = 360, 40
        # Zoom redelivers: the same bodies again are duplicates, stored once.
        for i in [i for i in range(22) if i % 10 != 9]:
            assert post_signed(port, bodies[i])[0] == 200
        sent["duplicate"] = 20
        files = {name.rsplit("_", 1)[1] for name in os.listdir(metrics_dir) if name.startswith("histogram_")}
        assert {str(pid) + ".db" for pid in workers} <= files, "both workers answered and wrote their counts"

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = scrape(port)
            counted = total(found, "zoom_webhook_deliveries_total", result="stored") + total(
                found, "zoom_webhook_deliveries_total", result="duplicate"
            )
            if counted >= 380:
                break
            time.sleep(0.2)
        event = "webinar.participant_joined"
        assert total(found, "zoom_webhook_deliveries_total", event=event, result="stored") == sent["stored"]
        assert total(found, "zoom_webhook_deliveries_total", event=event, result="duplicate") == sent["duplicate"]
        assert total(found, "zoom_webhook_deliveries_total", event=event, result="rejected") == sent["rejected"]
        assert total(found, "zoom_webhook_deliveries_total", result="error") == 0
        latency = total(found, "http_request_duration_seconds_count", handler="/webhooks/zoom")
        assert latency == 420
        assert total(found, "http_request_duration_seconds_count", handler="/webhooks/zoom", status="401") == 40
        assert found[("attendance_spool_pending_bytes", ())] == 0
        assert found[("attendance_database_size_bytes", ())] > 0
        assert found[("attendance_disk_free_bytes", ())] > 0
        assert oct(os.stat(metrics_dir).st_mode & 0o777) == "0o700"
        # Without the token: 401, and nothing about the service.
        status, body = get(port, "/metrics")
        assert status == 401 and b"zoom_" not in body
    finally:
        proc.stop()


def test_metrics_need_the_bearer_token_when_set(tmp_path):
    from integrations.web import create_app

    app = create_app(make_config(tmp_path, METRICS_TOKEN=METRICS_TOKEN))
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    assert "zoom_api_daily_budget_remaining 30000.0" in response.get_data(as_text=True)


def test_metrics_are_open_without_a_token(client):
    assert client.get("/metrics").status_code == 200


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_zoom_api_calls_are_counted_by_endpoint_and_status_including_429():
    with ZoomSimulator() as sim:
        sim.add_fault("participants", "rate_limit", times=2, retry_after="0")
        before_429 = _counter("zoom_api_requests_total", endpoint="participants", status="429")
        before_404 = _counter("zoom_api_requests_total", endpoint="participants", status="404")
        before_token = _counter("zoom_api_requests_total", endpoint="token", status="200")
        with simulator_client(sim) as client, pytest.raises(Exception, match="404"):
            client.get("/report/meetings/123/participants")
    assert _counter("zoom_api_requests_total", endpoint="participants", status="429") - before_429 == 2
    assert _counter("zoom_api_requests_total", endpoint="participants", status="404") - before_404 == 1
    assert _counter("zoom_api_requests_total", endpoint="token", status="200") - before_token == 1


def test_live_meeting_silence_is_a_gauge_per_meeting(client):
    start = {
        "event": "webinar.started",
        "event_ts": 1764237600000,
        "payload": {"object": {"id": "555", "uuid": "live-uuid==", "start_time": time_now()}},
    }
    post_event(client, start)
    post_event(client, json.loads(participant_body(1, run="live").decode().replace("fault-live==", "live-uuid==")))
    from integrations.derived.refresh import refresh_instances
    from integrations.ingest.normalize import normalize_pending
    from store.db import open_db

    db = open_db(client.application.config["SETTINGS"].database_path)
    normalize_pending(db)
    refresh_instances(db, ["live-uuid=="])
    text = client.get("/metrics").get_data(as_text=True)
    found = samples(text)
    labels = (("instance_uuid", "live-uuid=="), ("kind", "webinar"), ("meeting_id", "555"))
    assert ("zoom_live_meeting_seconds_since_last_delivery", labels) in found
    assert found[("zoom_live_meeting_participants", labels)] == 1
    assert found[("attendance_live_meetings", ())] == 1
    db.close()


def time_now() -> str:
    """A start time within the live window: the test's data, whatever today is."""
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_event_labels_are_bounded_to_known_zoom_events():
    assert event_label(b'{"event":"meeting.participant_left","payload":{}}') == "meeting.participant_left"
    assert event_label(b'{"event": "made.up.by.anyone"}') == "other"
    assert event_label(b"not json") == "other"


def test_api_endpoints_are_named_without_ids():
    assert api_endpoint("https://api.zoom.us/v2/report/webinars/%2Fab%3D%3D/participants?page_size=300") == (
        "participants"
    )
    assert api_endpoint("https://zoom.us/oauth/token") == "token"
    assert api_endpoint("https://api.zoom.us/v2/webinars/123/registrants") == "registrants"
    assert api_endpoint("https://api.zoom.us/v2/past_meetings/123/instances") == "instances"


def test_json_log_lines_are_one_object_each():
    record = logging.LogRecord("integrations.x", logging.WARNING, __file__, 1, "silent for %s\nmin", ("7",), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert (
        entry["level"] == "WARNING" and entry["message"] == "silent for 7\nmin" and entry["logger"] == "integrations.x"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["time"])


def test_log_format_json_in_the_web_process(tmp_path):
    port = pick_port()
    env = process_env(tmp_path / "a.db", PORT=str(port), LOG_FORMAT="json", WEB_CONCURRENCY="1")
    proc = start_procfile(web_command(), env)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            try:
                if get(port, "/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        assert post_signed(port, b'{"event":"meeting.started"}', secret="wrong")[0] == 401
        deadline = time.monotonic() + 10
        while "rejected webhook" not in proc.log() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        proc.stop()
    ours = [line for line in proc.log().splitlines() if '"logger": "integrations.' in line]
    assert ours, proc.log()
    entries = [json.loads(line) for line in ours]
    assert any(e["level"] == "WARNING" and "rejected webhook" in e["message"] for e in entries)


def test_bad_log_format_is_a_configuration_error(tmp_path):
    from integrations.config import ConfigError

    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        make_config(tmp_path, LOG_FORMAT="xml")


def test_web_start_removes_only_the_files_of_processes_that_are_gone(tmp_path):
    import subprocess
    import sys

    from integrations.ops.multiprocess import remove_dead_files

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(gone.stdout), os.getpid()
    directory = tmp_path / "metrics"
    directory.mkdir(mode=0o755)
    for name in (f"counter_{dead_pid}.db", f"histogram_{dead_pid}.db", f"counter_{live_pid}.db", "notes.txt"):
        (directory / name).write_bytes(b"")
    assert remove_dead_files(str(directory)) == 2
    assert sorted(os.listdir(directory)) == [f"counter_{live_pid}.db", "notes.txt"]
    assert oct(directory.stat().st_mode & 0o777) == "0o700"


def test_the_first_burst_of_threads_makes_the_metrics_once(monkeypatch):
    """A fresh gunicorn worker's first webhooks arrive on many threads at once (a 500 once)."""
    from integrations.ops import metrics as module

    made = []
    monkeypatch.setattr(module, "_made", [])
    monkeypatch.setattr(module, "_new_metrics", lambda: made.append(1) or module.Metrics(*[object()] * 5))
    start = threading.Barrier(16)

    def first_use():
        start.wait()
        return module.metrics()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: first_use(), range(16)))
    assert made == [1] and all(r is results[0] for r in results)
