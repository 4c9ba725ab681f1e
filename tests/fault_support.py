"""What the fault tests share (issue 7): the Procfile's processes started for real, signed
posts over HTTP, and checks that the evidence is whole.

Servers bind 127.0.0.1 on a free port with a temporary database, and each runs in its own
process group so a test can kill -9 the whole of it (gunicorn's master and its workers).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from integrations.ingest.spool import import_spool
from store.audit import open_readonly
from store.audit import verify_chain as audit_verify
from store.db import open_db
from store.evidence import GENESIS, chain_hash, content_hash, utc_now
from store.migrations import migrate
from tests.conftest import API_TOKEN, SECRET, signed_headers

ROOT = Path(__file__).resolve().parents[1]
APP_SPEC = "'integrations.web:create_app()'"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_line(name: str) -> str:
    """The command of the Procfile's `name` process."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"Procfile has no {name}: line")


def web_command() -> str:
    """The Procfile's web line, bound to 127.0.0.1 (tests never listen on other interfaces)."""
    line = procfile_line("web")
    assert "$PORT" in line and APP_SPEC in line, line
    return re.sub(r"--bind\s+0\.0\.0\.0:", "--bind 127.0.0.1:", line)


def process_env(database: Path, **extra: str) -> dict[str, str]:
    """The environment a Procfile process gets in these tests: temp database, test secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ZOOM_", "API_TOKEN", "DATABASE_URL", "WEB_CONCURRENCY"))
    }
    # The virtualenv's gunicorn and python, as a platform puts the app's environment first.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(
        DATABASE_URL=f"sqlite:///{database}",
        ZOOM_WEBHOOK_SECRET_TOKEN=SECRET,
        API_TOKEN=API_TOKEN,
        WEB_CONCURRENCY="2",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class Proc:
    """A Procfile process running in its own process group; its output read from a pipe.

    A pipe, as a platform's log collector reads it (and a full disk cannot stop it).
    """

    def __init__(self, process: subprocess.Popen, port: int | None = None):
        self.process = process
        self.port = port
        self._output: list[bytes] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._output.append(line)

    def _close(self) -> None:
        self._reader.join(timeout=5)
        if self.process.stdout is not None and not self._reader.is_alive():
            self.process.stdout.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return b"".join(list(self._output)).decode(errors="replace")

    def kill9(self) -> None:
        """kill -9 every process of the group: master and workers die mid-request."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close()

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait; SIGKILL the group if it lingers. Returns the exit status."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers, if any
        self.process.wait(timeout=10)
        self._close()
        return self.process.returncode


def start_procfile(command: str, env: dict[str, str]) -> Proc:
    """Run `command` as a platform runs a Procfile line: through the shell, in the repo."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", "exec " + command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(process)


def start_web(database: Path, **extra: str) -> Proc:
    """Start the Procfile's web process on a free port and wait until /healthz answers 200."""
    last_error = ""
    for _ in range(3):  # another test may take the free port between our probe and the bind
        port = free_port()
        env = process_env(database, PORT=str(port), **extra)
        proc = start_procfile(web_command(), env)
        proc.port = port
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and proc.process.poll() is None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if get(port, "/healthz", timeout=2)[0] == 200:
                    return proc
            time.sleep(0.1)
        last_error = proc.log()[-3000:]
        proc.kill9()
    raise AssertionError(f"web process did not become healthy:\n{last_error}")


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, *, timeout: float = 10
) -> tuple[int, bytes]:
    """One HTTP request on a fresh connection; (status, body).

    Raises OSError or http.client.HTTPException when no status came back.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        try:
            return response.status, response.read()
        except http.client.IncompleteRead as e:
            # The status line arrived (a kill cut the body short): Zoom would count the status.
            return response.status, e.partial
    finally:
        conn.close()


def get(port: int, path: str, *, headers: dict | None = None, timeout: float = 10) -> tuple[int, bytes]:
    return request(port, "GET", path, headers=headers, timeout=timeout)


def post_signed(port: int, body: bytes, *, timeout: float = 10, **kwargs) -> tuple[int, bytes]:
    """POST `body` to /webhooks/zoom signed as Zoom would."""
    return request(port, "POST", "/webhooks/zoom", body, signed_headers(body, **kwargs), timeout=timeout)


def participant_body(n: int, *, run: str = "r", name: str | None = None) -> bytes:
    """A signed-size (~700 byte) webinar.participant_joined body, unique per (`run`, `n`)."""
    event = {
        "event": "webinar.participant_joined",
        "event_ts": 1764237600000 + n,
        "payload": {
            "account_id": "AAAAAAAAAAAAAAAAAAAAAA",
            "object": {
                "id": "81234567890",
                "uuid": f"fault-{run}==",
                "host_id": "z8yCxjabcdEFGHfp8uQ",
                "topic": "Teachers' annual briefing",
                "type": 5,
                "start_time": "2026-11-27T09:00:00Z",
                "timezone": "Europe/London",
                "duration": 120,
                "participant": {
                    "user_id": str(16778240 + n),
                    "user_name": name or f"Teacher {run}-{n}",
                    "id": "",
                    "participant_uuid": f"pu-{run}-{n}",
                    "participant_user_id": "",
                    "registrant_id": f"reg-{run}-{n}",
                    "email": f"teacher.{run}.{n}@schools.example.org",
                    "customer_key": "",
                    "phone_number": "",
                    "join_time": "2026-11-27T09:00:01Z",
                },
            },
        },
    }
    return json.dumps(event).encode()


def connect(database: Path) -> sqlite3.Connection:
    """A plain read connection to a test database (WAL, like the app's)."""
    conn = sqlite3.connect(database, timeout=10)
    conn.row_factory = sqlite3.Row
    return conn


def verify_chain(database: Path) -> int:
    """Recompute every raw record's content and chain hash; return the record count.

    Recomputed here, independently, and by the app's own `verify` (store/audit.py): a broken,
    reordered or half-written record fails both.
    """
    audited = open_readonly(str(database))
    try:
        head = audit_verify(audited)
    finally:
        audited.close()
    conn = connect(database)
    try:
        previous = GENESIS
        count = 0
        for row in conn.execute("SELECT id, body, sha256, received_at, chain_hash FROM raw_records ORDER BY id"):
            assert content_hash(bytes(row["body"])) == row["sha256"], (
                f"record {row['id']}: body does not match its sha256"
            )
            expected = chain_hash(previous, row["sha256"], row["received_at"])
            assert row["chain_hash"] == expected, f"record {row['id']}: chain hash broken"
            previous = expected
            count += 1
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert head.count == count and head.chain_hash == previous, (head, count)
        return count
    finally:
        conn.close()


def stored_hashes(database: Path, source: str = "webhook", *, import_first: bool = True) -> dict[str, bytes]:
    """sha256 -> raw body of every stored record of `source`, after importing the spool (as
    every reader does: a delivery answered 200 may still wait there, integrations/ingest/spool.py);
    `import_first=False` reads raw_records as the web processes have left it."""
    if import_first:
        import_spooled(database)
    conn = connect(database)
    try:
        return {
            r["sha256"]: bytes(r["body"])
            for r in conn.execute("SELECT sha256, body FROM raw_records WHERE source = ?", [source])
        }
    finally:
        conn.close()


def wait_for_records(database: Path, count: int, *, timeout: float = 15) -> int:
    """Wait until raw_records holds at least `count` webhook records (the web processes
    import their spool within WEBHOOK_IMPORT_DELAY_SECONDS); how many it holds."""
    deadline = time.monotonic() + timeout
    while True:
        conn = connect(database)
        try:
            have = conn.execute("SELECT count(*) FROM raw_records WHERE source = 'webhook'").fetchone()[0]
        finally:
            conn.close()
        if have >= count or time.monotonic() > deadline:
            return have
        time.sleep(0.05)


def import_spooled(database: Path) -> None:
    """Move every spooled delivery into raw_records, as the worker and every reader do."""
    db = open_db(str(database))
    try:
        migrate(db)
        import_spool(db)
    finally:
        db.close()


def percentile(values: list[float], fraction: float) -> float:
    """The `fraction` percentile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


@contextlib.contextmanager
def bounded(seconds: float, what: str) -> Iterator[None]:
    """Fail if the block takes longer than `seconds` (keeps CI from hanging on a bug)."""
    start = time.monotonic()
    yield
    took = time.monotonic() - start
    assert took < seconds, f"{what} took {took:.1f}s (bound {seconds}s)"


def insert_deliveries(database: Path, bodies: list[bytes]) -> None:
    """Store many webhook deliveries in one transaction, hash-chained as the app does (setup)."""
    migrate(open_db(str(database)))
    conn = sqlite3.connect(database, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        last = conn.execute("SELECT chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
        previous = last[0] if last else GENESIS
        for body in bodies:
            sha, at = content_hash(body), utc_now()
            previous = chain_hash(previous, sha, at)
            conn.execute(
                "INSERT INTO raw_records (source, received_at, body, sha256, chain_hash, zm_request_timestamp) "
                "VALUES ('webhook', ?, ?, ?, ?, '0')",
                (at, body, sha, previous),
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


def ended_webinar(end, webinar_id: str, uuid: str) -> bytes:
    """A webinar.ended delivery body: the poller schedules the instance's report fetch."""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    start = end - timedelta(minutes=90)
    obj = {"id": webinar_id, "uuid": uuid, "host_id": "h", "topic": "Crash drill", "type": 5}
    obj |= {"start_time": start.strftime(fmt), "end_time": end.strftime(fmt), "duration": 90}
    event = {
        "event": "webinar.ended",
        "event_ts": int(end.timestamp() * 1000),
        "payload": {"account_id": "a", "object": obj},
    }
    return json.dumps(event).encode()


def fetch_progress(database) -> tuple[int, int, int]:
    """(id of the newest report fetch, pages it stored, complete fetches)."""
    conn = connect(database)
    try:
        row = conn.execute("SELECT id, pages FROM report_fetches ORDER BY id DESC LIMIT 1").fetchone()
        done = conn.execute("SELECT count(*) FROM report_fetches WHERE status = 'complete'").fetchone()[0]
        return (row[0], row[1], done) if row else (0, 0, done)
    finally:
        conn.close()


def start_worker(url: str, tmp_path: Path, name: str) -> Proc:
    """`worker.py schedule` on the database at `url`, standing by or leading within 0.2 s."""
    env = process_env(
        tmp_path / "unused.db",
        DATABASE_URL=url,
        LEADER_RETRY_SECONDS="0.2",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / f"metrics-{name}"),
    )
    return start_command("schedule", env)


def start_command(command: str, env: dict[str, str], *args: str, cwd: Path = ROOT) -> Proc:
    """`worker.py COMMAND [ARGS]` in its own process group, its output read from a pipe."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), command, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Proc(process)
