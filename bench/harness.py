"""What the ingest benchmarks share: servers on free local ports, signed bodies, load.

Servers are started from the Procfile's own `web` line, bound to 127.0.0.1; load is
either `wrk` (throughput, closed loop) or `run_schedule` (an open-loop generator that
sends each request at its planned time and measures latency from that time, so a
stalled server cannot hide its queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from integrations.demo.processes import stop_process_group  # noqa: E402
from integrations.ingest.backlog import backlog  # noqa: E402
from integrations.zoom.signature import sign  # noqa: E402
from store.db import open_db  # noqa: E402
from store.postgres import is_postgres_url  # noqa: E402

SECRET = "bench-webhook-secret"
WEBHOOK_PATH = "/webhooks/zoom"
BARE_APP = "'bench.bare_app:create_app()'"
OUR_APP = "'integrations.web:create_app()'"


class BenchError(Exception):
    "A benchmark could not run (server did not start, tool missing)"


# --- machine -----------------------------------------------------------------------------


def machine_description() -> str:
    """`nproc`, CPU model and kernel, for the figures' provenance."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}, Python {platform.python_version()}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- servers -----------------------------------------------------------------------------


def procfile_line(name: str, procfile: Path | None = None) -> str:
    """The command of the Procfile's `name` process (BENCH_PROCFILE names another Procfile)."""
    procfile = procfile or Path(os.environ.get("BENCH_PROCFILE") or ROOT / "Procfile")
    for line in procfile.read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise BenchError(f"no {name}: line in {procfile}")


def web_command(port: int, *, app: str = OUR_APP) -> str:
    """The Procfile web line bound to 127.0.0.1:`port`, serving `app` (same settings otherwise)."""
    line = procfile_line("web")
    if OUR_APP not in line:
        raise BenchError(f"Procfile web line does not serve {OUR_APP}: {line}")
    line = re.sub(r"--bind\s+\S+", f"--bind 127.0.0.1:{port}", line)
    return line.replace(OUR_APP, app)


@dataclass
class Server:
    """A gunicorn started from the Procfile line; stopped by its own process group."""

    name: str
    command: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        """SIGTERM the server's process group, then SIGKILL it if it lingers."""
        stop_process_group(self.process)

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a gunicorn master and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time used so far by `pids` (those still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def bench_env(
    database_path: Path | str, *, workers: int | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for a server under test: temp database (a SQLite file or a PostgreSQL
    URL), bench secret, venv on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    location = str(database_path)
    env["DATABASE_URL"] = location if is_postgres_url(location) else f"sqlite:///{location}"
    env["ZOOM_WEBHOOK_SECRET_TOKEN"] = SECRET
    env["PYTHONPATH"] = str(ROOT)
    env.setdefault("LOG_LEVEL", "WARNING")
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    env.update(extra or {})
    return env


def start_server(
    name: str, command: str, port: int, env: dict[str, str], log_dir: Path, *, timeout: float = 30
) -> Server:
    """Run `command` in bash (as a Procfile runner does) and wait until it answers."""
    server = start_process(name, command, env, log_dir)
    server.port = port
    process = server.process
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with {process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return server
        time.sleep(0.1)
    server.stop()
    raise BenchError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g}s:\n{server.log_tail()}")


def start_process(name: str, command: str, env: dict[str, str], log_dir: Path) -> Server:
    """Run a Procfile command that listens on nothing (the worker) in bash."""
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(name, command, 0, process, log_path)


@contextlib.contextmanager
def running(name: str, command: str, port: int, env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    """A started server, stopped on exit."""
    server = start_server(name, command, port, env, log_dir)
    try:
        yield server
    finally:
        server.stop()


# --- bodies ------------------------------------------------------------------------------


def participant_event(
    event: str, *, run: str, n: int, meeting_id: str = "81234567890", at: float | None = None, uuid_suffix: str = ""
) -> bytes:
    """A compact Zoom webhook body for attendee `n` (distinct for each run, n and event)."""
    at = time.time() if at is None else at
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    participant = {
        "user_id": f"{16780000 + n}{uuid_suffix}",
        "user_name": f"Attendee {n}",
        "id": f"pid{run}{n}",
        "participant_uuid": f"pu-{run}-{n}{uuid_suffix}",
        "email": f"attendee{n}@example.com",
        "registrant_id": f"reg-{run}-{n}",
        "participant_user_id": f"puid-{n}",
        "customer_key": "",
        "phone_number": "",
    }
    if event.endswith("participant_left"):
        participant["leave_time"] = stamp
        participant["leave_reason"] = "left the webinar."
    else:
        participant["join_time"] = stamp
    payload = {
        "event": event,
        "event_ts": int(at * 1000),
        "payload": {
            "account_id": "AAAAAABBBB",
            "object": {
                "id": meeting_id,
                "uuid": f"bench-{run}==",
                "host_id": "x1yCzABCDEfg23HiJKl4mN",
                "topic": "Benchmark webinar",
                "type": 5,
                "start_time": stamp,
                "duration": 60,
                "timezone": "UTC",
                "participant": participant,
            },
        },
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def signed_request(
    body: bytes, *, host: str = "127.0.0.1", secret: str = SECRET, timestamp: int | None = None
) -> bytes:
    """The raw HTTP/1.1 request Zoom would send for `body` (connection closed after)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = (
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Zoom Marketplace/1.0a\r\n"
        f"Content-Type: application/json; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"x-zm-request-timestamp: {ts}\r\nx-zm-signature: {sign(body, timestamp=ts, secret=secret)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return headers.encode() + body


def write_wrk_requests(path: Path, bodies: Iterable[bytes], *, secret: str = SECRET) -> int:
    """Write `timestamp TAB signature TAB body` lines for bench/wrk_requests.lua; return the count."""
    ts = str(int(time.time()))
    count = 0
    with open(path, "wb") as f:
        for body in bodies:
            if b"\n" in body or b"\t" in body:
                raise BenchError("wrk request bodies must be one line without tabs")
            f.write(f"{ts}\t{sign(body, timestamp=ts, secret=secret)}\t".encode() + body + b"\n")
            count += 1
    return count


# --- wrk (closed loop: throughput) --------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    ok: int  # 2xx answers
    duplicate: int  # 2xx answers saying "duplicate" (a pool that wrapped)
    failed: int  # non-2xx answers
    socket_errors: int
    wrapped: int  # times a thread ran out of distinct bodies
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


WRK_SCRIPT = Path(__file__).with_name("wrk_requests.lua")


def run_wrk(port: int, request_dir: Path, *, threads: int, connections: int, seconds: float) -> WrkResult:
    """Run wrk against 127.0.0.1:`port` with the signed requests in `request_dir`."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "10s",
        "-s", str(WRK_SCRIPT), f"http://127.0.0.1:{port}{WEBHOOK_PATH}", "--", str(request_dir),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    data = json.loads(line[len("BENCH ") :])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        ok=data["ok"],
        duplicate=data["duplicate"],
        failed=data["failed"],
        socket_errors=data["socket_errors"],
        wrapped=data["wrapped"],
        p99_ms=data["p99_us"] / 1000,
    )


# --- open loop (latency at a planned rate) ------------------------------------------------


@dataclass
class ScheduleResult:
    sent: int
    ok_bodies: list[bytes] = field(default_factory=list)  # bodies answered 2xx
    latencies_ms: list[float] = field(default_factory=list)  # of 2xx answers, from planned time
    offsets: list[float] = field(default_factory=list)  # planned offset of each of those answers
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)  # transport errors and timeouts
    seconds: float = 0.0
    max_lateness_ms: float = 0.0  # how far the generator itself fell behind its plan

    @property
    def failed(self) -> int:
        return self.sent - len(self.ok_bodies)

    def percentile(self, p: float, *, since: float = 0.0, until: float = float("inf")) -> float:
        """The p-th percentile latency of 2xx answers planned within [since, until) seconds."""
        return percentile([ms for ms, o in zip(self.latencies_ms, self.offsets, strict=True) if since <= o < until], p)


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (nearest rank) of `values`, or NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


async def _exchange(port: int, raw: bytes, timeout: float) -> int:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(raw)
        data = await asyncio.wait_for(reader.read(), timeout)  # the request says Connection: close
    finally:
        writer.close()
    if not data.startswith(b"HTTP/1."):
        raise ConnectionError("no HTTP answer")
    return int(data.split(b" ", 2)[1])


async def _run_schedule(
    ports: Sequence[int], plan: Sequence[tuple[float, bytes, bytes]], timeout: float, max_inflight: int, progress
) -> ScheduleResult:
    result = ScheduleResult(sent=len(plan))
    limit = asyncio.Semaphore(max_inflight)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(port: int, planned: float, body: bytes, raw: bytes) -> None:
        async with limit:
            try:
                status = await _exchange(port, raw, timeout)
            except (TimeoutError, OSError, ConnectionError, ValueError, IndexError) as e:
                name = type(e).__name__
                result.errors[name] = result.errors.get(name, 0) + 1
                return
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            result.ok_bodies.append(body)
            result.latencies_ms.append((loop.time() - planned) * 1000)
            result.offsets.append(planned - start)

    tasks = []
    next_progress = 0.0
    for i, (offset, body, raw) in enumerate(plan):
        planned = start + offset
        delay = planned - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        result.max_lateness_ms = max(result.max_lateness_ms, (loop.time() - planned) * 1000)
        tasks.append(asyncio.ensure_future(one(ports[i % len(ports)], planned, body, raw)))
        if progress and offset >= next_progress:
            progress(len(tasks), len(plan), offset)
            next_progress = offset + 5
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    return result


def run_schedule(
    port: int | Sequence[int],
    plan: Sequence[tuple[float, bytes]],
    *,
    timeout: float = 10.0,
    max_inflight: int = 512,
    secret: str = SECRET,
    progress=None,
) -> ScheduleResult:
    """POST each `(offset_seconds, body)` signed at its planned time; latency from that time.

    With several ports (several web processes) the requests take turns among them."""
    now = int(time.time())
    prepared = [(offset, body, signed_request(body, secret=secret, timestamp=now)) for offset, body in plan]
    ports = [port] if isinstance(port, int) else list(port)
    return asyncio.run(_run_schedule(ports, prepared, timeout, max_inflight, progress))


def peak_rate(plan: Sequence[tuple[float, bytes]]) -> tuple[int, int]:
    """The most requests planned within one second, and that second's start."""
    per_second: dict[int, int] = {}
    for offset, _ in plan:
        per_second[int(offset)] = per_second.get(int(offset), 0) + 1
    second = max(per_second, key=per_second.__getitem__, default=0)
    return per_second.get(second, 0), second


def constant_rate_plan(bodies: Sequence[bytes], rate: float) -> list[tuple[float, bytes]]:
    """Send `bodies` evenly at `rate` per second."""
    return [(i / rate, body) for i, body in enumerate(bodies)]


# --- the database side --------------------------------------------------------------------


def _open(database: Path | str):
    """The bench's database (a SQLite file or a PostgreSQL URL), opened as the app opens it."""
    return contextlib.closing(open_db(str(database), lock_timeout=30))


def stored_webhook_count(database_path: Path | str) -> int:
    """Rows of raw webhook evidence in the database."""
    with _open(database_path) as db:
        return db.execute("SELECT count(*) FROM raw_records WHERE source = 'webhook'").fetchone()[0]


def wait_for_stable_count(database_path: Path | str, *, settle: float = 0.5, timeout: float = 15) -> int:
    """The stored count once the spool is imported and the count stops changing."""
    deadline = time.monotonic() + timeout
    wait_for_import(database_path, timeout=timeout)
    previous = -1
    while True:
        current = stored_webhook_count(database_path)
        if current == previous or time.monotonic() > deadline:
            return current
        previous = current
        time.sleep(settle)


def wait_for_import(database_path: Path | str, *, timeout: float = 15) -> float:
    """Wait until the web processes have moved everything they acknowledged into raw_records
    (the spool's import, or the PostgreSQL intake's chaining); the seconds it took. Webhooks
    are answered from there and moved up to WEBHOOK_IMPORT_DELAY_SECONDS later, so that work
    belongs to the round that caused it."""
    started = time.monotonic()
    if isinstance(database_path, Path) and not database_path.exists():
        return 0.0
    with _open(database_path) as db:
        waiting = backlog(db)
        while waiting.oldest(db) is not None and time.monotonic() - started < timeout:
            time.sleep(0.05)
    return time.monotonic() - started


def missing_bodies(database_path: Path | str, bodies: Iterable[bytes]) -> int:
    """How many of `bodies` (each answered 2xx) have no raw record: events lost."""
    wanted = {hashlib.sha256(body).hexdigest() for body in bodies}
    with _open(database_path) as db:
        stored = {row[0] for row in db.execute("SELECT sha256 FROM raw_records WHERE source = 'webhook'")}
    return len(wanted - stored)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def temp_dir(prefix: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)


def timed(main: Callable[[], int]) -> int:
    """Run a benchmark's `main`, then print how long the whole run took; its exit code."""
    started = time.monotonic()
    code = main()
    print(f"(took {time.monotonic() - started:.0f} s)")
    return code
