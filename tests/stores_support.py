"""One realistic scenario played into a store, and every command's output read back (issue 19).

`play(url, ...)` feeds a store through the real paths (signed webhooks to the app, a report
sync from the Zoom simulator over HTTP, a CSV import, rules, certificates) at a frozen time,
then runs each command of the CLI, the read API and the dashboard and keeps what they print:
tests/test_stores_agree.py compares SQLite's outputs with PostgreSQL's.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import time_machine
from click.testing import CliRunner

import worker
from integrations.ingest.webhook_path import IntakeIngest, ingest
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator
from integrations.web import create_app
from store.db import close_thread_db, open_db
from tests.attendance_support import Scenario
from tests.certificates_support import MEETING, UUID, finished_meeting
from tests.conftest import API_TOKEN, make_config
from tests.dashboard_support import SECRET_KEY, sign_in
from tests.funnel_support import PASS_PERCENT, WEBINAR, scenario
from tests.funnel_support import UUID as WEBINAR_UUID_RAW
from tests.funnel_support import Scenario as FunnelScenario
from tests.zoom_support import FakeClock, simulator_client

# The instances as they go in a query string (their + and = must be escaped).
WEBINAR_UUID, CERT_UUID = quote(WEBINAR_UUID_RAW, safe=""), quote(UUID, safe="")
# Every write of the scenario happens at this instant (received_at is in the hash chain).
FROZEN_AT = datetime(2026, 2, 10, 18, 0, tzinfo=UTC)
BASE_URL = "https://certs.example.org"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass(frozen=True)
class Output:
    """What one command printed: its exit code, stdout and stderr (or a read's status and body)."""

    code: int
    out: str
    err: str = ""


def scenario_config(url: str, workdir: Path, key_file: Path):
    """The Config of one store's run: its database, a shared signing key, the dashboard's key."""
    return make_config(
        workdir,
        DATABASE_URL=url,
        CERT_SIGNING_KEY_FILE=str(key_file),
        PUBLIC_BASE_URL=BASE_URL,
        CERT_SEND_PER_MINUTE="60000",
        CERT_VERIFY_PER_MINUTE="100000",
        SECRET_KEY=SECRET_KEY,
    )


def cli_env(url: str, key_file: Path) -> dict[str, str]:
    """The environment `worker.py` reads in this run (configuration comes only from it)."""
    return {
        "DATABASE_URL": url,
        "ZOOM_WEBHOOK_SECRET_TOKEN": "x",
        "API_TOKEN": "",
        "CERT_SIGNING_KEY_FILE": str(key_file),
        "PUBLIC_BASE_URL": BASE_URL,
    }


class Player:
    """Runs commands against one store and keeps their outputs under a name."""

    def __init__(self, url: str, workdir: Path, key_file: Path):
        self.url = url
        self.workdir = workdir
        self.env = cli_env(url, key_file)
        self.outputs: dict[str, Output] = {}

    def run(self, name: str, *args: str) -> Output:
        """`worker.py ARGS`, kept as `name`; an exception is kept as its text (compared too)."""
        result = CliRunner().invoke(worker.cli, list(args), env=self.env, catch_exceptions=True)
        err = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            err += f"\n{type(result.exception).__name__}: {result.exception}"
        output = Output(result.exit_code, self.normalize(result.stdout), self.normalize(err))
        self.outputs[name] = output
        return output

    def normalize(self, text: str) -> str:
        """`text` without what differs between runs on purpose: where each run keeps its
        files and database, and how long a command took (wall time)."""
        text = text.replace(str(self.workdir), "WORKDIR").replace(self.url, "DATABASE_URL")
        text = re.sub(r"\bin \d+\.\d+s\b", "in N.Ns", text)
        return re.sub(r'"(seconds|longest_transaction_seconds)": [0-9.]+', r'"\1": 0', text)

    def keep(self, name: str, code: int, out: str) -> None:
        self.outputs[name] = Output(code, out)

    def get(self, name: str, client, path: str, **kwargs: Any) -> str:
        """GET `path` from the app, kept as `name`; an exception is kept as its text."""
        try:
            answer = client.get(path, **kwargs)
        except Exception as e:  # a failing page must not hide the outputs after it
            self.outputs[name] = Output(500, "", f"{type(e).__name__}: {e}")
            return ""
        body = answer.get_data(as_text=True)
        # The CSRF token is random per session: the one value that differs on purpose.
        body = re.sub(r'name="csrf_token" value="[^"]+"', 'name="csrf_token" value="…"', body)
        self.outputs[name] = Output(answer.status_code, body)
        return body


def webhooks(client, config) -> None:
    """The certificate meeting from signed webhooks, and a few live events of the webinar."""
    finished_meeting(client, config)
    webinar = Scenario(client, config, meeting_id=WEBINAR, uuid=WEBINAR_UUID_RAW, kind="webinar", day="2026-02-10")
    webinar.started("14:00")
    webinar.joined("20000000", "Teacher 0", "14:03", email="teacher0@schools.example")
    webinar.joined("99999999", "Late Guest", "15:30", email="")
    webinar.left("99999999", "Late Guest", "16:10", email="")
    webinar.ended("17:00", start="14:00")


def bundle_text(directory: Path) -> str:
    """Every file of an evidence bundle: its name and the sha256 of its bytes, in order."""
    lines = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            lines.append(f"{path.relative_to(directory)} {hashlib.sha256(path.read_bytes()).hexdigest()}")
    return "\n".join(lines) + "\n"


def funnel_scenario() -> FunnelScenario:
    """The webinar's Zoom data (report, registrants, quiz) and its outside registrations."""
    return scenario(160)


def play(url: str, workdir: Path, key_file: Path, sim: ZoomSimulator, funnel: FunnelScenario) -> dict[str, Output]:
    """Feed the scenario into the store at `url`, then read every output.

    `sim` serves `funnel.dataset`; one simulator for both stores, so the report URLs stored
    as evidence (its port) are the same.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = scenario_config(url, workdir, key_file)
    player = Player(url, workdir, key_file)
    csv_path = workdir / "registrations.csv"
    csv_path.write_bytes(funnel.csv)
    with time_machine.travel(FROZEN_AT, tick=False):
        app = create_app(config)
        app.config["TESTING"] = True
        client = app.test_client()
        try:
            feed(player, client, config, sim, str(csv_path))
            read_commands(player, workdir)
            read_api(player, client)
            dashboard(player, app)
        finally:
            intake = ingest(config)
            if isinstance(intake, IntakeIngest):  # PostgreSQL: its pool and chain-writer thread
                intake.close()
            close_thread_db(config.database_path)  # the app's requests keep one open
    return player.outputs


def feed(player: Player, client, config, sim: ZoomSimulator, csv_path: str) -> None:
    """Webhooks, a report sync, an outside list, rules and certificates: the scenario's writes."""
    webhooks(client, config)
    db = open_db(config.database_path)
    try:
        zoom = simulator_client(sim, FakeClock(FROZEN_AT))
        try:
            sync_meeting(db, zoom, WEBINAR)
        finally:
            zoom.close()
    finally:
        db.close()
    player.run("import-registrations", "import-registrations", WEBINAR, csv_path, "--format", "json")
    player.run("rules webinar", "rules", WEBINAR, "--min-minutes", "60", "--pass-percent", str(PASS_PERCENT))
    player.run("rules meeting", "rules", MEETING, "--min-minutes", "30", "--format", "json")
    player.run("certificates issue webinar", "certificates", "issue", WEBINAR, "--stage", "passed")
    player.run("certificates issue meeting", "certificates", "issue", MEETING)
    player.run("certificates revoke", "certificates", "revoke", "2", "--reason", "duplicate account")
    player.run("certificates reissue", "certificates", "reissue", "3", "--name", "Teacher Corrected")


def read_commands(player: Player, workdir: Path) -> None:
    """Every read command of the CLI, in each format."""
    for fmt in ("json", "csv", "table"):
        player.run(f"meetings {fmt}", "meetings", "--format", fmt)
        for meeting in (MEETING, WEBINAR):
            player.run(f"attendance {meeting} {fmt}", "attendance", meeting, "--format", fmt)
            player.run(f"summary {meeting} {fmt}", "summary", meeting, "--format", fmt)
            player.run(f"timeline {meeting} {fmt}", "timeline", meeting, "--step", "600", "--format", fmt)
        player.run(f"funnel {fmt}", "funnel", WEBINAR, "--format", fmt)
        player.run(f"funnel passed {fmt}", "funnel", WEBINAR, "--stage", "passed", "--format", fmt)
        player.run(f"certificates list {fmt}", "certificates", "list", WEBINAR, "--format", fmt)
    player.run("attendance absent", "attendance", WEBINAR, "--include-absent", "--format", "csv")
    player.run("attendance override", "attendance", WEBINAR, "--min-percent", "50", "--format", "json")
    player.run("funnel dropped", "funnel", WEBINAR, "--dropped-at", "attended", "--format", "json")
    player.run("funnel override", "funnel", WEBINAR, "--min-minutes", "45", "--format", "json")
    player.run("certificates list meeting", "certificates", "list", MEETING, "--format", "json")
    code = re.search(r"/verify/([A-Za-z0-9_-]+)", player.outputs["certificates list csv"].out)
    player.run("certificates verify", "certificates", "verify", f"{BASE_URL}/verify/{code.group(1) if code else 'x'}")
    player.run("verify", "verify")
    player.run("verify json", "verify", "--json")
    exports = {
        "export-raw jsonl": [],
        "export-raw csv": ["--format", "csv"],
        "export-raw meeting": ["--meeting", MEETING, "--workers", "1"],
        "export-raw since": ["--since", "2026-02-10T18:00:00Z", "--workers", "2"],
        "export-raw until": ["--until", "2026-02-11", "--format", "csv", "--workers", "3"],
    }
    for n, (name, options) in enumerate(exports.items()):
        # To a file: the export writes to its file descriptor, which CliRunner's stdout has not.
        path = workdir / f"export-{n}"
        player.run(name, "export-raw", *options, "--output", str(path))
        player.keep(f"{name} file", 0, path.read_text() if path.exists() else "")
    # A meeting nothing names: exit 1 on both stores (a known one is "export-raw meeting" above).
    player.run("export-raw unknown", "export-raw", "--meeting", "nope")
    bundle = workdir / "evidence"
    player.run("evidence", "evidence", WEBINAR, "--output", str(bundle))
    player.keep("evidence files", 0, bundle_text(bundle) if bundle.exists() else "")
    player.run("problems", "problems")
    player.run("rebuild", "rebuild", "--format", "json")
    player.run("attendance after rebuild", "attendance", WEBINAR, "--format", "json")
    player.run("funnel after rebuild", "funnel", WEBINAR, "--format", "json")
    player.run("backup", "backup", str(workdir / "backup.db"))


def read_api(player: Player, client) -> None:
    """The read API's answers (JSON and CSV)."""
    paths = ["/api/meetings"]
    for meeting in (MEETING, WEBINAR):
        for view in ("attendance", "summary", "timeline"):
            paths.append(f"/api/meetings/{meeting}/{view}")
        paths.append(f"/api/meetings/{meeting}/attendance?format=csv&include_absent=1")
    paths += [
        f"/api/meetings/{WEBINAR}/funnel",
        f"/api/meetings/{WEBINAR}/funnel?stage=passed&format=csv",
        f"/api/meetings/{WEBINAR}/funnel?dropped_at=attended",
        "/api/raw-events",
        f"/api/raw-events?meeting={MEETING}&format=csv",
    ]
    for path in [*paths, "/api/raw-events?meeting=nope"]:
        player.get(f"GET {path}", client, path, headers=AUTH)


def dashboard(player: Player, app) -> None:
    """The dashboard's pages and data (its queries are store/dashboard_queries.py)."""
    client = app.test_client()
    sign_in(client)
    pages = [
        "/",
        f"/instance?uuid={WEBINAR_UUID}",
        f"/instance/data.json?uuid={WEBINAR_UUID}",
        f"/instance/funnel.json?uuid={WEBINAR_UUID}",
        f"/attendance?uuid={WEBINAR_UUID}&sort=name&dir=asc&page=2",
        f"/attendance.csv?uuid={WEBINAR_UUID}",
        f"/attendance.jsonl?uuid={CERT_UUID}&min_minutes=30",
        f"/funnel?uuid={WEBINAR_UUID}",
        f"/funnel?uuid={WEBINAR_UUID}&stage=passed",
        f"/instance?uuid={CERT_UUID}",
        "/raw/1.json",
    ]
    for page in pages:
        player.get(f"dashboard {page}", client, page)
    person = re.search(r'href="(/person\?[^"]+)"', player.outputs[f"dashboard {pages[4]}"].out)
    page = unescape(person.group(1)) if person else "/person?uuid=none"
    player.get("dashboard /person", client, page)
