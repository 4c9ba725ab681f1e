"""`worker.py demo`: a simulated webinar through the real pipeline, no Zoom account.

The web app runs as the Procfile's gunicorn process; signed webhooks from the simulator
are posted to it, normalized, and the report is synced from the simulator over HTTP."""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrations.certificates.eligibility import eligible_people
from integrations.certificates.issue import issue_to_eligible
from integrations.certificates.keys import read_key, write_new_key
from integrations.demo.processes import stop_process_group
from integrations.funnel.registrations import parse_registrations
from integrations.funnel.stages import funnel, refresh_funnel
from integrations.reads.attendance import current_instance, now_seconds
from integrations.reports.sync import sync_meeting
from integrations.simulator.webhooks import SimulatedDelivery, instance_deliveries
from integrations.simulator.zoom_api import Dataset, ZoomSimulator, add_quiz, synthetic_webinar
from integrations.zoom.client import ZoomClient
from integrations.zoom.signature import sign
from store.attendance_queries import attendance, summary
from store.db import open_db
from store.registrations import save_import
from store.rules import current_rules, set_rules

ROOT = Path(__file__).resolve().parents[2]
WEBINAR_ID = "98765432100"
# At speed 1 the joins arrive over this many seconds, the rest of the webinar over the next.
JOIN_SECONDS = 6.0
REST_SECONDS = 3.0
CONNECTIONS = 16  # Zoom's deliveries arrive concurrently
GIVE_UP_AFTER = 50  # deliveries in a row without any answer: the web app is gone
RETRIES = 3  # Zoom retries a 5xx or a failed connection (at +5, +25, +85 minutes: NOTES.md)

Progress = Callable[[str], None]


class DemoError(Exception):
    "The demo could not run (the web app did not start, a step failed)"


@dataclass
class Sent:
    """What happened to the webhook deliveries."""

    generated: int = 0
    lost: int = 0  # never delivered: Zoom gave up on them (simulated)
    stored: int = 0  # answered 2xx
    refused: int = 0  # still not 2xx after the retries
    retried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0


@dataclass
class DemoResult:
    database_path: str
    webinar_id: str
    instance_uuid: str
    dataset: Dataset
    sent: Sent
    webhook_people: int  # people seen before the report, from webhooks alone
    summary: dict[str, Any]
    attendees: list[dict[str, Any]]
    report_pages: int
    report_rows: int
    api_calls: int
    seconds: float
    funnel: dict[str, Any] = field(default_factory=dict)
    certificates_issued: int = 0
    signing_key_file: str = ""


def run_demo(
    attendees: int = 300,
    *,
    speed: float = 1.0,
    database_path: str | None = None,
    seed: int = 7,
    lost: float = 0.01,
    progress: Progress = lambda message: None,
) -> DemoResult:
    """Run a whole simulated webinar and return what the service made of it."""
    started = time.monotonic()
    if database_path is None:
        database_path = os.path.join(tempfile.mkdtemp(prefix="attendance-demo-"), "attendance.db")
    database_path = os.path.abspath(database_path)
    dataset = synthetic_webinar(attendees, seed=seed, webinar_id=WEBINAR_ID)
    [instance] = dataset.instances[WEBINAR_ID]
    uuid = instance["uuid"]
    add_quiz(dataset, WEBINAR_ID, uuid, seed=seed)  # issue 16: the funnel needs a quiz
    deliveries = instance_deliveries(dataset, WEBINAR_ID, uuid, lost=lost, seed=seed)
    rows = dataset.participants[uuid]
    progress(
        f"simulated webinar {WEBINAR_ID}: {attendees:,} attendees, {len(rows):,} connections in Zoom's report, "
        f"{len(deliveries):,} webhooks ({sum(d.lost for d in deliveries)} to be lost on the way)"
    )
    secret = secrets.token_hex(16)
    with ZoomSimulator(dataset) as zoom:
        progress(f"Zoom API simulator on {zoom.url}")
        with web_app(database_path, secret) as port:
            progress(f"web app (Procfile web) on http://127.0.0.1:{port}, database {database_path}")
            # The earliest joins (nearly everyone's first) come in the burst; most rejoins and second devices later.
            sent = send_deliveries(
                port, deliveries, secret=secret, speed=speed, progress=progress, burst_joins=attendees
            )
        webhook_people = _people(database_path, uuid)
        progress(f"webhooks stored and normalized: {webhook_people:,} people seen so far; syncing the report")
        pages, report_rows, api_calls = _sync_report(database_path, zoom, progress)
    funnel = _funnel(database_path, dataset, seed, progress)
    summary, top = _results(database_path, uuid)
    key_file, issued = _issue_certificates(database_path)
    progress(f"certificates: {issued:,} issued to those who met the webinar's stored rules (key {key_file})")
    return DemoResult(
        database_path=database_path,
        webinar_id=WEBINAR_ID,
        instance_uuid=uuid,
        dataset=dataset,
        sent=sent,
        webhook_people=webhook_people,
        summary=summary,
        attendees=top,
        report_pages=pages,
        report_rows=report_rows,
        api_calls=api_calls,
        seconds=time.monotonic() - started,
        funnel=funnel,
        certificates_issued=issued,
        signing_key_file=key_file,
    )


def _issue_certificates(database_path: str) -> tuple[str, int]:
    """Issue the demo webinar's certificates with a signing key kept next to its database."""
    key_file = os.path.join(os.path.dirname(database_path), "demo-signing-key.pem")
    key = read_key(key_file) if os.path.exists(key_file) else write_new_key(key_file)
    with _database(database_path) as db:
        uuid = current_instance(db, WEBINAR_ID)
        # The rules _funnel stored for the webinar, as `certificates issue` applies them.
        found = eligible_people(db, uuid, "attended", now=int(time.time()))
        outcome = issue_to_eligible(db, found, key=key)
    return key_file, len(outcome.issued)


# --- the web app -------------------------------------------------------------------------------


def web_command(port: int, procfile: Path = ROOT / "Procfile") -> str:
    """The Procfile's web line on 127.0.0.1:`port`, run by this Python's gunicorn."""
    line = next((ln for ln in procfile.read_text().splitlines() if ln.startswith("web:")), None)
    if line is None:
        raise DemoError(f"no web: line in {procfile}")
    command = re.sub(r"--bind\s+\S+", f"--bind 127.0.0.1:{port}", line.split(":", 1)[1].strip())
    if not command.startswith("gunicorn "):
        raise DemoError(f"the Procfile web line does not start gunicorn: {command}")
    # The virtualenv that runs the demo may not be on PATH.
    return f'"{sys.executable}" -m {command}'


@contextlib.contextmanager
def web_app(database_path: str, secret: str, *, timeout: float = 30) -> Iterator[int]:
    """Run the web app on a free port until the block ends; yields the port."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOOM_", "DATABASE_URL", "API_TOKEN"))}
    env.update(
        DATABASE_URL=f"sqlite:///{database_path}",
        ZOOM_WEBHOOK_SECRET_TOKEN=secret,
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "WARNING"),
    )
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        ["bash", "-c", "exec " + web_command(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_until_listening(port, process, timeout, log)
        try:
            yield port
        except DemoError as e:
            log.seek(0)
            raise DemoError(f"{e}; the web app's log ends:\n{log.read()[-3000:].decode(errors='replace')}") from None
    finally:
        stop_process_group(process)
        log.close()


def _wait_until_listening(port: int, process: subprocess.Popen, timeout: float, log) -> None:
    """Until /healthz answers 200: the workers have booted and the database takes writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    log.seek(0)
    tail = log.read()[-3000:].decode(errors="replace")
    raise DemoError(f"the web app did not come up on 127.0.0.1:{port}:\n{tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- sending -----------------------------------------------------------------------------------


def send_plan(
    deliveries: list[SimulatedDelivery],
    *,
    burst_joins: int | None = None,
    join_seconds: float = JOIN_SECONDS,
    rest_seconds: float = REST_SECONDS,
) -> list[tuple[float, SimulatedDelivery]]:
    """When to send each delivery Zoom sends (not the lost ones).

    The time up to the `burst_joins`-th join (default: the last) is compressed into
    `join_seconds`, the rest of the webinar (rejoins, second devices, drops, leaves) into
    `rest_seconds`; within each, deliveries keep their relative timing.
    """
    sent = [d for d in deliveries if not d.lost]
    joins = sorted(d.at for d in sent if d.event.endswith("participant_joined")) or [sent[0].at]
    first, end = sent[0].at, sent[-1].at
    burst_end = joins[min(len(joins), burst_joins or len(joins)) - 1]
    join_span = max(1.0, (burst_end - first).total_seconds())
    rest_span = max(1.0, (end - burst_end).total_seconds())
    plan = []
    for d in sent:
        if d.at <= burst_end:
            offset = (d.at - first).total_seconds() / join_span * join_seconds
        else:
            offset = join_seconds + (d.at - burst_end).total_seconds() / rest_span * rest_seconds
        plan.append((offset, d))
    return plan


def send_deliveries(
    port: int,
    deliveries: list[SimulatedDelivery],
    *,
    secret: str,
    speed: float,
    progress: Progress,
    burst_joins: int | None = None,
) -> Sent:
    """POST the deliveries Zoom sends, signed, each no earlier than its planned moment."""
    plan = send_plan(
        deliveries, burst_joins=burst_joins, join_seconds=JOIN_SECONDS / speed, rest_seconds=REST_SECONDS / speed
    )
    sent = Sent(generated=len(deliveries), lost=len(deliveries) - len(plan))
    guard = threading.Lock()
    items = iter(plan)
    start = time.monotonic()
    unanswered = [0]  # deliveries in a row that got no HTTP answer at all

    def sender() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            while True:
                with guard:
                    item = next(items, None) if unanswered[0] < GIVE_UP_AFTER else None
                if item is None:
                    return
                offset, delivery = item
                delay = start + offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                status, attempts = _deliver(connection, delivery.body, secret)
                with guard:
                    unanswered[0] = unanswered[0] + 1 if status == 0 else 0
                    sent.statuses[status] += 1
                    sent.retried += attempts - 1
                    if 200 <= status < 300:
                        sent.stored += 1
                    else:
                        sent.refused += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(CONNECTIONS)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        report_at = time.monotonic() + 1.0
        for t in threads:
            t.join(timeout=max(0.0, report_at - time.monotonic()))
        with guard:
            done = sent.stored + sent.refused
        progress(f"webhooks: {done:,}/{len(plan):,} sent, {sent.stored:,} stored (2xx), {sent.refused} refused")
    sent.seconds = time.monotonic() - start
    if unanswered[0] >= GIVE_UP_AFTER:
        raise DemoError(f"the web app stopped answering after {sent.stored:,} deliveries")
    return sent


def _deliver(connection: http.client.HTTPConnection, body: bytes, secret: str) -> tuple[int, int]:
    """POST one delivery, retrying a 5xx or a broken connection; (last status, attempts)."""
    status = 0
    for attempt in range(1, RETRIES + 2):
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "x-zm-request-timestamp": timestamp,
            "x-zm-signature": sign(body, timestamp=timestamp, secret=secret),
            "User-Agent": "Zoom Marketplace/1.0a (attendance-worker demo)",
        }
        try:
            connection.request("POST", "/webhooks/zoom", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            connection.close()  # reconnects on the next request
            status = 0
        if status and status < 500:
            return status, attempt
        time.sleep(0.2 * attempt)
    return status, RETRIES + 1


# --- after the webinar -------------------------------------------------------------------------


@contextlib.contextmanager
def _database(database_path: str):
    db = open_db(database_path)
    try:
        yield db
    finally:
        db.close()


def _people(database_path: str, uuid: str) -> int:
    with _database(database_path) as db:
        current_instance(db, uuid)
        return summary(db, uuid, now=now_seconds())["unique_attendees"]


def _sync_report(database_path: str, zoom: ZoomSimulator, progress: Progress) -> tuple[int, int, int]:
    """Fetch the webinar's report and registrants from the simulator: (pages, rows, API calls)."""
    client = ZoomClient(
        **zoom.client_settings(),
        requests_per_second=20,  # the simulator's own account: no quota shared with other apps
        timeout=30,
    )
    try:
        with _database(database_path) as db:
            result = sync_meeting(db, client, WEBINAR_ID, kind="webinar", progress=progress)
        return sum(f.pages for f in result.fetches), sum(f.rows for f in result.fetches), client.api_calls
    finally:
        client.close()


def _results(database_path: str, uuid: str, top: int = 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with _database(database_path) as db:
        current_instance(db, uuid)
        now = now_seconds()
        return summary(db, uuid, now=now), attendance(db, uuid, now=now)["attendees"][:top]


def outside_list(dataset: Dataset, seed: int) -> bytes:
    """The organizer's own registration form as CSV: most Zoom registrants, some who never
    registered in Zoom, one row with a mistyped email (issue 16)."""
    rng = random.Random(seed)
    lines = ["email,name,school"]
    for r in dataset.registrants[WEBINAR_ID]:
        if rng.random() < 0.9:
            lines.append(f"{r['email']},{r['first_name']} {r['last_name']},School {rng.randint(1, 40)}")
    for n in range(max(3, len(lines) // 20)):
        lines.append(f"form.only.{n}@example.org,Form Only {n},School {rng.randint(1, 40)}")
    lines.append("not-an-email,Typo Person,School 1")
    return ("\n".join(lines) + "\n").encode()


def _funnel(database_path: str, dataset: Dataset, seed: int, progress: Progress) -> dict[str, Any]:
    """Import the outside list (kept beside the database), set the rules, compute the funnel."""
    body = outside_list(dataset, seed)
    path = os.path.join(os.path.dirname(database_path), "registrations.csv")
    # Personal data: owner-only, never through a symlink.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(body)
    rows, rejects = parse_registrations(body)
    with _database(database_path) as db:
        save_import(db, WEBINAR_ID, body=body, filename="registrations.csv", rows=rows, rejects=rejects)
        if current_rules(db, WEBINAR_ID) is None:
            set_rules(db, WEBINAR_ID, {"min_minutes": 60, "min_percent": None, "pass_percent": 70})
        uuids = [
            r[0]
            for r in db.execute("SELECT instance_uuid FROM attendance_instances WHERE meeting_id = ?", [WEBINAR_ID])
        ]
        refresh_funnel(db, uuids)
        progress(f"outside registration list {path}: {len(rows)} rows taken, {len(rejects)} rejected; rules set")
        return funnel(db, WEBINAR_ID)
