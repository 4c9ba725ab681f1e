"""A Zoom-compatible REST API on 127.0.0.1 for tests, the demo and benchmarks.

OAuth tokens, participant reports, past instances and registrants from an in-memory
`Dataset`, with Zoom's paging and error shapes, scriptable faults and a count of every
call (docs/internals.md has an example)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict
from urllib.parse import parse_qs, unquote, urlsplit

from integrations.zoom.paths import API_PATHS

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 300
FAULT_KINDS = frozenset(
    (
        "rate_limit",  # 429, X-RateLimit-Type QPS, Retry-After as given (or none)
        "daily_limit",  # 429, X-RateLimit-Type Daily-limit
        "server_error",  # 500
        "slow",  # answer after `delay` seconds (past the client's read timeout)
        "expired_token",  # 401, code 124: the access token has expired
        "expired_page_token",  # 400, code 300 on a request carrying a next_page_token
        "page_token_loop",  # the page's next_page_token points back at the same page
        "malformed_json",  # 200 with a truncated JSON body
        "not_found",  # 404, code 3001
        "too_old",  # 400, code 12702
    )
)
ENDPOINTS = ("token", "participants", "instances", "registrants", "polls", "poll_definitions")
# The classic scope each endpoint needs (meetings-api.openapi.json); `doctor` checks them.
ALL_SCOPES = frozenset(("report:read:admin", "webinar:read:admin", "meeting:read:admin"))
REQUIRED_SCOPE = {
    ("participants", "meeting"): "report:read:admin",
    ("participants", "webinar"): "report:read:admin",
    ("polls", "meeting"): "report:read:admin",
    ("polls", "webinar"): "report:read:admin",
    ("poll_definitions", "meeting"): "meeting:read:admin",
    ("poll_definitions", "webinar"): "webinar:read:admin",
    ("instances", "meeting"): "meeting:read:admin",
    ("instances", "webinar"): "webinar:read:admin",
    ("registrants", "webinar"): "webinar:read:admin",
}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Dataset:
    """What the simulated account holds: meetings, their instances, report rows, registrants."""

    meetings: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> {kind, topic}
    instances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id -> [{uuid, start_time}]
    participants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uuid -> Zoom report rows
    registrants: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # webinar id -> Zoom registrants
    too_old: set[str] = field(default_factory=set)  # instance uuids whose report Zoom no longer serves
    polls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # id -> Zoom poll definitions
    poll_reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # uuid -> report `questions`

    def add_meeting(self, meeting_id: str, kind: str = "meeting", topic: str = "Simulated meeting") -> None:
        """Add a meeting or webinar (its instances come with add_instance)."""
        self.meetings[str(meeting_id)] = {"kind": kind, "topic": topic}
        self.instances.setdefault(str(meeting_id), [])

    def add_instance(
        self, meeting_id: str, uuid: str, start_time: str, participants: Iterable[dict[str, Any]] = ()
    ) -> None:
        """Add an ended instance with its report rows (Zoom's shape)."""
        self.instances.setdefault(str(meeting_id), []).append({"uuid": uuid, "start_time": start_time})
        self.participants[uuid] = list(participants)

    def instance_kind(self, uuid: str) -> str | None:
        """'meeting' or 'webinar' for a known instance uuid."""
        for meeting_id, instances in self.instances.items():
            if any(i["uuid"] == uuid for i in instances):
                return self.meetings.get(meeting_id, {}).get("kind")
        return None

    @property
    def row_count(self) -> int:
        """Report rows over all instances."""
        return sum(len(rows) for rows in self.participants.values())


@dataclass
class Fault:
    """A scripted misbehaviour: `kind` on the next `times` matching calls."""

    endpoint: str
    kind: str
    times: int = 1
    page: int | None = None  # only this page (1-based) of a listing
    retry_after: str | None = None
    delay: float = 0.0
    hits: int = 0


class ClientSettings(TypedDict):
    """What ZoomClient takes to reach the simulator and authenticate as its account."""

    account_id: str
    client_id: str
    client_secret: str
    api_base_url: str
    oauth_token_url: str


@dataclass(frozen=True)
class Call:
    """One request the simulator received."""

    endpoint: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class ZoomSimulator:
    """A Zoom API server in a background thread: `start()`, `url`, `stop()`."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        account_id: str = "sim-account",
        client_id: str = "sim-client-id",
        client_secret: str = "sim-client-secret",
        token_ttl: int = 3600,
        page_token_ttl: float | None = None,
        qps_limit: float | None = None,
        scopes: frozenset[str] = ALL_SCOPES,
        clock_offset: float = 0.0,
    ):
        self.dataset = dataset or Dataset()
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.page_token_ttl = page_token_ttl  # seconds; None: tokens never expire on their own
        self.qps_limit = qps_limit  # answer 429 QPS above this many API calls per second
        self.scopes = scopes  # what the app was granted: others answer 403, code 4711
        self.clock_offset = clock_offset  # seconds the Date header is ahead of this machine's clock
        self.calls: Counter[str] = Counter()
        self.log: list[Call] = []
        self.faults: list[Fault] = []
        self._tokens: dict[str, float] = {}  # access token -> expiry (monotonic)
        self._page_tokens: dict[str, tuple[tuple, int, int, float]] = {}  # token -> (listing, offset, size, issued)
        self._recent: list[float] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> ZoomSimulator:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        simulator = self

        class Handler(_Handler):
            sim = simulator

        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (wakes slow answers so they end at once)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ZoomSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"  # where start() binds it

    @property
    def api_base_url(self) -> str:
        return self.url + "/v2"

    @property
    def oauth_token_url(self) -> str:
        return self.url + "/oauth/token"

    def client_settings(self) -> ClientSettings:
        """Credentials and URLs as ZoomClient takes them: `ZoomClient(**sim.client_settings(), ...)`."""
        return {
            "account_id": self.account_id,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_base_url": self.api_base_url,
            "oauth_token_url": self.oauth_token_url,
        }

    def environ(self) -> dict[str, str]:
        """The environment variables that point this service at the simulator."""
        return {
            "ZOOM_ACCOUNT_ID": self.account_id,
            "ZOOM_CLIENT_ID": self.client_id,
            "ZOOM_CLIENT_SECRET": self.client_secret,
            "ZOOM_API_BASE_URL": self.api_base_url,
            "ZOOM_OAUTH_TOKEN_URL": self.oauth_token_url,
        }

    # -- scripting ---------------------------------------------------------------------------

    def load(self, dataset: Dataset) -> None:
        """Serve `dataset` from now on."""
        with self._lock:
            self.dataset = dataset

    def add_fault(
        self,
        endpoint: str,
        kind: str,
        *,
        times: int = 1,
        page: int | None = None,
        retry_after: str | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Misbehave with `kind` on the next `times` calls to `endpoint` (optionally one page)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {sorted(FAULT_KINDS)}")
        fault = Fault(endpoint, kind, times, page, retry_after, delay)
        with self._lock:
            self.faults.append(fault)
        return fault

    def expire_tokens(self) -> None:
        """Make every access token issued so far invalid (as after its hour ran out)."""
        with self._lock:
            self._tokens.clear()

    def reset_counts(self) -> None:
        """Forget the calls counted so far."""
        with self._lock:
            self.calls.clear()
            self.log.clear()

    @property
    def api_calls(self) -> int:
        """Calls to the API (everything but the token endpoint)."""
        return sum(n for name, n in self.calls.items() if name != "token")

    # -- request handling (called from server threads) -----------------------------------------

    def _record(self, endpoint: str, method: str, path: str, query: dict[str, str], status: int) -> None:
        with self._lock:
            self.calls[endpoint] += 1
            self.log.append(Call(endpoint, method, path, query, status, time.monotonic()))

    def _take_fault(self, endpoint: str, page: int, has_page_token: bool) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.endpoint != endpoint or fault.hits >= fault.times:
                    continue
                if fault.page is not None and fault.page != page:
                    continue
                if fault.kind == "expired_page_token" and not has_page_token:
                    continue
                fault.hits += 1
                return fault
        return None

    def _over_qps(self) -> bool:
        if not self.qps_limit:
            return False
        now = time.monotonic()
        with self._lock:
            self._recent = [t for t in self._recent if now - t < 1.0]
            self._recent.append(now)
            return len(self._recent) > self.qps_limit

    def issue_token(self) -> str:
        """A new access token, valid for token_ttl seconds."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_ttl
        return token

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def page_token(self, listing: tuple, offset: int, size: int) -> str:
        """The next_page_token for `listing` at `offset` (deterministic, so re-fetches match)."""
        token = hashlib.sha256(repr((listing, offset, size)).encode()).hexdigest()[:32]
        with self._lock:
            self._page_tokens[token] = (listing, offset, size, time.monotonic())
        return token

    def resolve_page_token(self, token: str, listing: tuple) -> int | None:
        """The offset a page token stands for, or None if unknown, expired or for another listing."""
        with self._lock:
            entry = self._page_tokens.get(token)
        if entry is None or entry[0] != listing:
            return None
        if self.page_token_ttl is not None and time.monotonic() - entry[3] > self.page_token_ttl:
            return None
        return entry[1]

    def wait(self, seconds: float) -> None:
        """Sleep, unless the simulator stops first."""
        self._stopping.wait(seconds)


# Routes match after one decoding of the path and collapsing of repeated slashes, as Zoom's
# front end does: which is why a UUID starting with "/" or containing "//" must be
# double-encoded (NOTES.md "IDs").
ROUTES = tuple((name, re.compile(f"^/v2{pattern}$")) for name, pattern in API_PATHS if name in ENDPOINTS)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sim: ZoomSimulator
    _call: tuple[str, str, str, dict[str, str]] = ("other", "", "", {})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
        log.debug("simulator: " + format, *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, off by the simulator's clock_offset (doctor's clock check)."""
        return super().date_time_string((time.time() if timestamp is None else timestamp) + self.sim.clock_offset)

    def _send(self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        # Counted before answering, so a client that has its answer sees its call counted.
        self.sim._record(*self._call, status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout we provoked): nothing to answer

    def _error(self, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> int:
        self._send(status, {"code": code, "message": message}, headers)
        return status

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()} | {k: v[-1] for k, v in parse_qs(form).items()}
        self._call = ("token" if parts.path == "/oauth/token" else "other", "POST", parts.path, query)
        if parts.path != "/oauth/token":
            self._error(404, 404, "Not found")
            return
        self._token(query)

    def _token(self, query: dict[str, str]) -> int:
        sim = self.sim
        fault = sim._take_fault("token", 1, False)
        if fault is not None:
            answered = self._fault(fault)
            if answered:
                return answered
        expected = "Basic " + base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._send(400, {"reason": "Invalid client_id or client_secret", "error": "invalid_client"})
            return 400
        if query.get("grant_type") != "account_credentials":
            self._send(400, {"reason": "Unsupported grant type", "error": "unsupported_grant_type"})
            return 400
        if query.get("account_id") != sim.account_id:
            self._send(400, {"reason": "Invalid request : Bad account id", "error": "invalid_request"})
            return 400
        body = {
            "access_token": sim.issue_token(),
            "token_type": "bearer",
            "expires_in": sim.token_ttl,
            "scope": " ".join(sorted(sim.scopes)),
            "api_url": sim.url,
        }
        self._send(200, body)
        return 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        path = re.sub(r"/+", "/", unquote(parts.path))
        for endpoint, pattern in ROUTES:
            match = pattern.match(path)
            if match:
                self._call = (endpoint, "GET", parts.path, query)
                self._api(endpoint, match.group(1).rstrip("s"), unquote(match.group(2)), query)
                return
        self._call = ("other", "GET", parts.path, query)
        self._error(404, 404, "Not found")

    def _api(self, endpoint: str, kind: str, key: str, query: dict[str, str]) -> int:
        sim = self.sim
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not sim.token_valid(auth[7:]):
            return self._error(401, 124, "Invalid access token.")
        scope = REQUIRED_SCOPE.get((endpoint, kind))
        if scope is not None and scope not in sim.scopes:  # what doctor's scope checks see
            return self._error(403, 4711, f"Invalid access token, does not contain scopes:[{scope}].")
        if sim._over_qps():
            return self._error(
                429,
                429,
                "You have reached the maximum per-second rate limit for this API. Try again later.",
                {"X-RateLimit-Category": "Heavy", "X-RateLimit-Type": "QPS", "Retry-After": "1"},
            )
        try:
            size = int(query.get("page_size", "30"))
        except ValueError:
            return self._error(400, 300, "Invalid field: page_size")
        if not 1 <= size <= MAX_PAGE_SIZE:
            return self._error(400, 300, f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        token = query.get("next_page_token", "")
        listing: tuple = (endpoint, kind, key, query.get("status", "approved"))
        offset = 0
        if token:
            found = sim.resolve_page_token(token, listing)
            offset = found if found is not None else -1
        page = offset // size + 1 if offset >= 0 else 0
        fault = sim._take_fault(endpoint, page, bool(token))
        if fault is not None:
            answered = self._fault(fault, kind=kind)
            if answered:
                return answered
        if offset < 0:
            return self._error(400, 300, "The next page token is invalid or expired.")
        with sim._lock:
            dataset = sim.dataset
        by_meeting = {"instances": self._instances, "polls": self._polls, "poll_definitions": self._poll_definitions}
        if endpoint in by_meeting:
            return by_meeting[endpoint](dataset, kind, key)
        if endpoint == "registrants":
            if dataset.meetings.get(key, {}).get("kind") != "webinar":
                return self._error(404, 3001, f"Webinar does not exist: {key}.")
            status = query.get("status", "approved")
            rows = [r for r in dataset.registrants.get(key, []) if r.get("status", "approved") == status]
            return self._page(listing, "registrants", rows, offset, size, loop=fault, extra={"page_number": page})
        if dataset.instance_kind(key) != kind:
            name = "Meeting" if kind == "meeting" else "Webinar"
            return self._error(404, 3001, f"{name} {key} not found or has expired.")
        if key in dataset.too_old:
            return self._error(400, 12702, f"Can not access a {kind} a year ago.")
        return self._page(listing, "participants", dataset.participants.get(key, []), offset, size, loop=fault)

    def _poll_definitions(self, dataset: Dataset, kind: str, meeting_id: str) -> int:
        if dataset.meetings.get(meeting_id, {}).get("kind") != kind:
            name = "Meeting" if kind == "meeting" else "Webinar"
            return self._error(404, 3001, f"{name} does not exist: {meeting_id}.")
        polls = dataset.polls.get(meeting_id, [])
        self._send(200, {"polls": polls, "total_records": len(polls)})
        return 200

    def _polls(self, dataset: Dataset, kind: str, key: str) -> int:
        """The poll report of an instance UUID (or, for a meeting number, an empty one)."""
        if dataset.instance_kind(key) != kind and key not in dataset.meetings:
            return self._error(404, 3001, f"{kind.title()} {key} not found or has expired.")
        if key in dataset.too_old:
            return self._error(400, 12702, f"Can not access a {kind} a year ago.")
        found = [(m, x["start_time"]) for m, listed in dataset.instances.items() for x in listed if x["uuid"] == key]
        if not found:
            self._send(200, {"id": key, "uuid": key, "start_time": "", "questions": []})
            return 200
        meeting_id, start = found[0]
        body = {"id": int(meeting_id), "uuid": key, "start_time": start}
        self._send(200, {**body, "questions": dataset.poll_reports.get(key, [])})
        return 200

    def _instances(self, dataset: Dataset, kind: str, meeting_id: str) -> int:
        if not meeting_id.isdigit():
            return self._error(400, 300, f"Invalid {kind} ID.")
        meeting = dataset.meetings.get(meeting_id)
        if meeting is None or meeting["kind"] != kind:
            name = "Meeting" if kind == "meeting" else "Webinar"
            return self._error(404, 3001, f"{name} does not exist: {meeting_id}.")
        self._send(200, {f"{kind}s": dataset.instances.get(meeting_id, [])})
        return 200

    def _page(
        self,
        listing: tuple,
        key: str,
        rows: list[dict[str, Any]],
        offset: int,
        size: int,
        *,
        loop: Fault | None,
        extra: dict[str, Any] | None = None,
    ) -> int:
        chunk = rows[offset : offset + size]
        following = offset + size
        if loop is not None and loop.kind == "page_token_loop":
            token = self.sim.page_token(listing, offset, size)
        else:
            token = self.sim.page_token(listing, following, size) if following < len(rows) else ""
        body = {
            "page_count": max(1, -(-len(rows) // size)),
            "page_size": size,
            "total_records": len(rows),
            **(extra or {}),
            "next_page_token": token,
            key: chunk,
        }
        if loop is not None and loop.kind == "malformed_json":
            self._send(200, json.dumps(body).encode()[: max(10, len(json.dumps(body)) // 2)])
            return 200
        self._send(200, body)
        return 200

    def _fault(self, fault: Fault, *, kind: str = "meeting") -> int | None:
        """Answer as the fault says; None when it only changes the normal answer."""
        sim = self.sim
        if fault.kind == "rate_limit":
            headers = {"X-RateLimit-Category": "Heavy", "X-RateLimit-Type": "QPS"}
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            return self._error(
                429, 429, "You have reached the maximum per-second rate limit for this API. Try again later.", headers
            )
        if fault.kind == "daily_limit":
            reset = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            headers = {
                "X-RateLimit-Category": "Heavy",
                "X-RateLimit-Type": "Daily-limit",
                "X-RateLimit-Limit": "30000",
                "X-RateLimit-Remaining": "0",
            }
            if fault.retry_after != "":  # "" scripts a 429 without Retry-After
                headers["Retry-After"] = fault.retry_after or _iso(reset)
            message = "You have reached the maximum daily rate limit for this API. Refer to the response header for details on when you can make another request."
            return self._error(429, 429, message, headers)
        if fault.kind == "server_error":
            return self._error(500, 500, "Internal server error.")
        if fault.kind == "slow":
            sim.wait(fault.delay)
            return None
        if fault.kind == "expired_token":
            return self._error(401, 124, "Access token is expired.")
        if fault.kind == "expired_page_token":
            return self._error(400, 300, "The next page token is invalid or expired.")
        if fault.kind == "not_found":
            return self._error(404, 3001, f"{kind.title()} not found or has expired.")
        if fault.kind == "too_old":
            return self._error(400, 12702, f"Can not access a {kind} a year ago.")
        return None  # page_token_loop, malformed_json: shape the normal page


# -- synthetic data ----------------------------------------------------------------------------


def _zoom_id(rng: random.Random, length: int = 22) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(alphabet) for _ in range(length))


def instance_uuid(rng: random.Random) -> str:
    """A base64 instance UUID like Zoom's (may contain + and /)."""
    return base64.b64encode(rng.randbytes(16)).decode()


FIRST = (
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Emeka",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jun",
    "Kofi",
    "Lena",
    "Mateo",
    "Noor",
    "Olga",
    "Priya",
)
LAST = (
    "Alvarez",
    "Brown",
    "Chen",
    "Diallo",
    "Eriksen",
    "Fischer",
    "García",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Müller",
    "Nakamura",
)


def synthetic_webinar(
    attendees: int = 300,
    *,
    seed: int = 1,
    webinar_id: str = "91234567890",
    uuid: str | None = None,
    start: datetime = datetime(2026, 1, 15, 15, 0, tzinfo=UTC),
    minutes: int = 90,
    rows: int | None = None,
    absentees: float = 0.3,
) -> Dataset:
    """A realistic webinar: rejoins, second devices, waiting-room rows, guests without email,
    registrants (approved, pending, denied) and absentees. `rows` trims or extends the
    report to exactly that many rows (for benchmarks)."""
    rng = random.Random(seed)
    dataset = Dataset()
    dataset.add_meeting(webinar_id, "webinar", "Quarterly all-hands (simulated)")
    uuid = uuid or instance_uuid(rng)
    end = start + timedelta(minutes=minutes)
    report: list[dict[str, Any]] = []
    registrants: list[dict[str, Any]] = []
    person = 0
    while (rows is None and person < attendees) or (rows is not None and len(report) < rows):
        person += 1
        first, last = rng.choice(FIRST), rng.choice(LAST)
        name = f"{first} {last}"
        guest = rng.random() < 0.08  # joined without registering: no email, no registrant id
        email = (
            "" if guest else f"{first.lower()}.{last.lower()}.{person}@example.org".encode("ascii", "ignore").decode()
        )
        registrant_id = "" if guest else _zoom_id(rng)
        signed_in = not guest and rng.random() < 0.6
        participant_user_id = _zoom_id(rng) if signed_in else ""
        if not guest:
            registrants.append(_registrant(rng, registrant_id, first, last, email, start, "approved"))
        joined = start + timedelta(seconds=rng.randint(-300, 900))
        left = end - timedelta(seconds=rng.randint(0, 1200))
        pattern = rng.random()
        spans: list[tuple[datetime, datetime, str]] = []
        if pattern < 0.05:  # waited in the waiting room first
            admitted = joined + timedelta(seconds=rng.randint(20, 240))
            spans += [(joined, admitted, "in_waiting_room"), (admitted, left, "in_meeting")]
        elif pattern < 0.20:  # dropped and rejoined (a new user_id each time)
            cut = joined + (left - joined) * rng.uniform(0.2, 0.8)
            back = cut + timedelta(seconds=rng.randint(10, 600))
            spans += [(joined, cut, "in_meeting"), (min(back, left), left, "in_meeting")]
        elif pattern < 0.25:  # a second device, overlapping the first
            other = joined + timedelta(seconds=rng.randint(60, 1800))
            spans += [
                (joined, left, "in_meeting"),
                (min(other, left), left - timedelta(seconds=rng.randint(0, 600)), "in_meeting"),
            ]
        else:
            spans.append((joined, left, "in_meeting"))
        for begin, finish, status in spans:
            finish = max(finish, begin)
            report.append(
                {
                    "id": participant_user_id,
                    "user_id": str(16778240 + len(report)),
                    "name": name if email or rng.random() < 0.7 else f"+1 555 01{person % 100:02d}",
                    "user_email": email,
                    "registrant_id": registrant_id,
                    "participant_user_id": participant_user_id,
                    "join_time": _iso(begin),
                    "leave_time": _iso(finish),
                    "duration": int((finish - begin).total_seconds()),
                    "failover": False,
                    "status": status,
                    "customer_key": "",
                    "bo_mtg_id": "",
                }
            )
    if rows is not None:
        del report[rows:]
    for _ in range(int(len(registrants) * absentees)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        person += 1
        status = rng.choices(("approved", "pending", "denied"), (0.8, 0.12, 0.08))[0]
        email = f"{first.lower()}.{last.lower()}.{person}@example.org".encode("ascii", "ignore").decode()
        registrants.append(_registrant(rng, _zoom_id(rng), first, last, email, start, status))
    report.sort(key=lambda r: r["join_time"])
    dataset.add_instance(webinar_id, uuid, _iso(start), report)
    dataset.registrants[webinar_id] = registrants
    return dataset


def _registrant(
    rng: random.Random, registrant_id: str, first: str, last: str, email: str, start: datetime, status: str
) -> dict[str, Any]:
    return {
        "id": registrant_id,
        "email": email,
        "first_name": first,
        "last_name": last,
        "status": status,
        "create_time": _iso(start - timedelta(days=rng.randint(1, 30), seconds=rng.randint(0, 86400))),
        "join_url": f"https://example.zoom.us/w/{registrant_id}",
    }


def add_quiz(
    dataset: Dataset,
    meeting_id: str,
    uuid: str,
    *,
    seed: int = 1,
    questions: int = 10,
    answer_share: float = 0.8,
    anonymous: int = 3,
    start: datetime | None = None,
) -> dict[str, Any]:
    """Add a quiz (poll_type 3) to a meeting and answers from its report's people; returns the quiz.

    Each person with an email answers with probability `answer_share`, a random number of
    questions, each right with probability 0.75; a few also change an answer later (the last
    one counts). `anonymous` entries answer as "Anonymous Attendee" without email.
    """
    rng = random.Random(seed)
    quiz_id = _zoom_id(rng)
    items = []
    for n in range(questions):
        choices = [f"Choice {c} of question {n + 1}" for c in "ABCD"]
        multiple = n % 4 == 3
        right = choices[:2] if multiple else [choices[n % 4]]
        items.append(
            {
                "name": f"Question {n + 1}: which is right?",
                "type": "multiple" if multiple else "single",
                "answers": choices,
                "right_answers": right,
            }
        )
    quiz = {
        "id": quiz_id,
        "status": "ended",
        "anonymous": False,
        "poll_type": 3,
        "title": "Certification quiz",
        "questions": items,
    }
    dataset.polls.setdefault(str(meeting_id), []).append(quiz)
    when = start or datetime(2026, 1, 15, 16, 0, tzinfo=UTC)
    people: dict[str, str] = {}
    for row in dataset.participants.get(uuid, []):
        if row.get("user_email"):
            people.setdefault(row["user_email"], row["name"])
    entries = []
    for email, name in sorted(people.items()):
        if rng.random() >= answer_share:
            continue
        entries.append({"name": name, "email": email, "question_details": _answers(rng, quiz_id, items, when)})
    for _ in range(anonymous):
        entries.append(
            {"name": "Anonymous Attendee", "email": "", "question_details": _answers(rng, quiz_id, items, when)}
        )
    dataset.poll_reports[uuid] = dataset.poll_reports.get(uuid, []) + entries
    return quiz


def _answers(rng: random.Random, quiz_id: str, items: list[dict[str, Any]], when: datetime) -> list[dict[str, Any]]:
    details = []
    for n, item in enumerate(items[: rng.randint(1, len(items))]):
        right = ";".join(item["right_answers"])
        wrong = item["answers"][-1]
        at = when + timedelta(seconds=30 * n + rng.randint(0, 20))
        answer = right if rng.random() < 0.75 else wrong
        details.append({"question": item["name"], "answer": answer, "polling_id": quiz_id, "date_time": _iso(at)})
        if rng.random() < 0.05:  # changed their mind: the later answer is the one that counts
            later = wrong if answer == right else right
            details.append(
                {
                    "question": item["name"],
                    "answer": later,
                    "polling_id": quiz_id,
                    "date_time": _iso(at + timedelta(seconds=5)),
                }
            )
    return details
