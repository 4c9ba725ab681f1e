"""The checks behind `worker.py doctor` (issue 18): is this setup ready for a live event?

Each check returns a `Check`: ok, failed (with how to fix it) or skipped (does not apply).
No check shows a secret: tokens are described by their length, never their value, and
URLs lose their query strings.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import hmac
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import requests

from integrations.config import Config, ConfigError
from integrations.zoom.client import Forbidden, ZoomApiError, ZoomAuthError, ZoomClient, ZoomError
from integrations.zoom.signature import sign
from store.db import DatabaseUnavailable, PostgresStore, Store
from store.health import write_probe
from store.postgres import NO_TABLES, first_line, is_postgres_url, redact, redact_text

OK, FAILED, SKIPPED = "ok", "failed", "skipped"
MIN_TOKEN_LENGTH = 32
MAX_CLOCK_OFFSET_SECONDS = 60.0
ZOOM_ANSWER_SECONDS = 3.0  # Zoom's limit for a webhook answer (NOTES.md "Delivery")
APP_PAGE = "Zoom App Marketplace > Manage > your Server-to-Server OAuth app"
# (what the service does with it, path, the classic scope it needs); {id} is a probe ID.
API_PROBES = (
    ("report (participants)", "/report/webinars/{id}/participants?page_size=1", "report:read:admin"),
    ("report (polls)", "/report/webinars/{id}/polls", "report:read:admin"),
    ("webinar (past instances)", "/past_webinars/{id}/instances", "webinar:read:admin"),
    ("webinar (registrants)", "/webinars/{id}/registrants?page_size=1", "webinar:read:admin"),
    ("meeting (past instances)", "/past_meetings/{id}/instances", "meeting:read:admin"),
)
PROBE_ID = "1"  # no such meeting: an answer of "not found" still shows the scope is there


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def weak_token(value: str) -> str | None:
    """Why `value` is too weak for a bearer token, or None when it is strong enough."""
    if len(value) < MIN_TOKEN_LENGTH:
        return f"{len(value)} characters, fewer than {MIN_TOKEN_LENGTH}"
    if len(set(value)) < 10:
        return f"only {len(set(value))} distinct characters"
    return None


def check_configuration(config: Config) -> Iterator[Check]:
    """Every variable the service needs is set; bearer tokens are strong."""
    fix_token = f'generate one with: python -c "import secrets; print(secrets.token_urlsafe({MIN_TOKEN_LENGTH}))"'
    if config.webhook_secret_token:
        yield Check(
            "webhook secret", OK, f"ZOOM_WEBHOOK_SECRET_TOKEN set ({len(config.webhook_secret_token)} characters)"
        )
    else:
        yield Check(
            "webhook secret",
            FAILED,
            "ZOOM_WEBHOOK_SECRET_TOKEN is not set: /webhooks/zoom refuses every delivery",
            f"copy the Secret Token from {APP_PAGE} > Features > Event Subscriptions",
        )
    try:
        config.require_zoom_api()
        yield Check("zoom credentials set", OK, "ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID, ZOOM_CLIENT_SECRET set")
    except ConfigError as e:
        yield Check("zoom credentials set", FAILED, str(e), f"copy them from {APP_PAGE} > App Credentials")
    for name, value, off in (
        ("API_TOKEN", config.api_token, "the read API is off"),
        ("METRICS_TOKEN", config.metrics_token, "GET /metrics answers anyone: keep the port private"),
    ):
        if not value:
            yield Check(name, OK, f"not set: {off}")
        elif reason := weak_token(value):
            yield Check(name, FAILED, f"{name} is weak ({reason})", fix_token)
        else:
            yield Check(name, OK, f"set ({len(value)} characters)")


def check_database(db: Store, *, min_free_bytes: float) -> Iterator[Check]:
    """The database takes a durable write, passes integrity_check, and has room to grow."""
    where = redact(db.path)  # a PostgreSQL URL's password is never shown
    try:
        write_probe(db)
        yield Check("database writable", OK, f"{where} takes a durable write")
    except (DatabaseUnavailable, sqlite3.Error, OSError) as e:
        yield Check("database writable", FAILED, f"{where}: {e}", "check the file's owner, mode and the disk (df -h)")
    check = "PostgreSQL (checks its own pages)" if isinstance(db, PostgresStore) else "PRAGMA integrity_check"
    try:
        result = db.integrity_check()
    except (sqlite3.Error, DatabaseUnavailable) as e:
        result = [str(e)]
    if result == ["ok"]:
        yield Check("database integrity", OK, f"{check}: ok")
    else:
        yield Check(
            "database integrity",
            FAILED,
            f"{check}: {'; '.join(result[:3])}",
            "stop the service, restore the latest backup (`worker.py backup`), then `worker.py verify`",
        )
    free = db.disk_free_bytes()
    if free is None:
        yield Check(
            "disk space",
            SKIPPED,
            f"not visible from a client of {where}",
            "watch the PostgreSQL server's disk (or the managed service's storage alert)",
        )
        return
    text = f"{free / 1024 / 1024:.0f} MB free beside {where}"
    if free >= min_free_bytes:
        yield Check("disk space", OK, text)
    else:
        yield Check(
            "disk space",
            FAILED,
            f"{text}, under ALERT_MIN_FREE_DISK_MB ({min_free_bytes / 1024 / 1024:.0f} MB)",
            "free space or move DATABASE_URL to a larger disk before the event",
        )


class _DateRecorder:
    """A requests response hook keeping the last Date header and when it arrived."""

    def __init__(self, now: Callable[[], datetime]):
        self.now = now
        self.date: datetime | None = None
        self.received: datetime | None = None

    def __call__(self, response: requests.Response, *args, **kwargs) -> None:
        value = response.headers.get("Date")
        if value:
            try:
                self.date = email.utils.parsedate_to_datetime(value)
                self.received = self.now()
            except (TypeError, ValueError):
                pass


def check_zoom(config: Config, *, now: Callable[[], datetime]) -> Iterator[Check]:
    """Credentials get a token; each API the service uses answers with the scopes granted; clocks agree."""
    try:
        client = ZoomClient.from_config(
            dataclasses.replace(config, zoom_max_retries=1, zoom_timeout_seconds=10.0), sleep=lambda s: None
        )
    except ConfigError:
        yield Check("zoom token", SKIPPED, "no credentials (see above)")
        return
    dates = _DateRecorder(now)
    client.session.hooks["response"].append(dates)
    with client:
        try:
            client.token()
        except ZoomAuthError as e:
            yield Check(
                "zoom token",
                FAILED,
                str(e).split("; check")[0],
                f"copy Account ID, Client ID and Client Secret from {APP_PAGE} > App Credentials, "
                "and make sure the app is activated",
            )
            return
        except ZoomError as e:
            yield Check(
                "zoom token",
                FAILED,
                f"no token from {config.zoom_oauth_token_url}: {type(e).__name__}: {e}",
                "check this machine's outbound HTTPS to zoom.us (proxy, firewall, DNS)",
            )
            return
        yield Check("zoom token", OK, "Server-to-Server OAuth credentials get an access token")
        for name, path, scope in API_PROBES:
            yield _probe(client, name, path.format(id=PROBE_ID), scope)
    yield _clock(dates)


def _probe(client: ZoomClient, name: str, path: str, scope: str) -> Check:
    try:
        client.get(path)
    except Forbidden as e:
        return Check(
            f"scope {name}",
            FAILED,
            f"Zoom refuses {path.split('?')[0]}: {e}",
            f"add the scope {scope} (or its granular equivalent) in {APP_PAGE} > Scopes, then re-activate the app",
        )
    except ZoomApiError as e:
        if e.status in (400, 404):  # answered about our made-up ID: the call itself is allowed
            return Check(f"scope {name}", OK, f"{scope}: answered (HTTP {e.status} for a probe ID)")
        return Check(f"scope {name}", FAILED, str(e), "run doctor again; if it persists see status.zoom.us")
    except ZoomError as e:
        return Check(f"scope {name}", FAILED, f"{type(e).__name__}: {e}", "run doctor again later")
    return Check(f"scope {name}", OK, f"{scope}: answered")


def _clock(dates: _DateRecorder) -> Check:
    if dates.date is None or dates.received is None:
        return Check("clock", FAILED, "Zoom's answers carried no Date header to compare with", "run doctor again")
    offset = (dates.received - dates.date).total_seconds()
    text = f"this machine's clock is {abs(offset):.0f}s {'ahead of' if offset > 0 else 'behind'} Zoom's Date header"
    if abs(offset) < MAX_CLOCK_OFFSET_SECONDS:
        return Check("clock", OK, text)
    return Check(
        "clock",
        FAILED,
        f"{text} (limit {MAX_CLOCK_OFFSET_SECONDS:.0f}s): webhook timestamps will look stale",
        "enable time sync: timedatectl set-ntp true (or chrony/ntpd)",
    )


def check_public_url(config: Config, *, session: requests.Session | None = None) -> Check:
    """The public webhook URL answers a signed endpoint.url_validation as Zoom expects, over HTTPS."""
    name = "public webhook URL"
    if not config.public_base_url_set or config.public_base_url == Config.public_base_url:
        # The default (this machine, for certificate links) is no address Zoom can post to.
        return Check(name, SKIPPED, "PUBLIC_BASE_URL not set")
    url = config.public_base_url + "/webhooks/zoom"
    if not url.startswith("https://"):
        return Check(
            name,
            FAILED,
            f"{url} is not HTTPS: Zoom posts only to https:// URLs",
            "put nginx or caddy with a certificate in front (docs/operations.md)",
        )
    if not config.webhook_secret_token:
        return Check(name, SKIPPED, "ZOOM_WEBHOOK_SECRET_TOKEN not set (see above)")
    plain = secrets.token_urlsafe(16)
    body = json.dumps(
        {"payload": {"plainToken": plain}, "event_ts": int(time.time() * 1000), "event": "endpoint.url_validation"}
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "x-zm-request-timestamp": timestamp,
        "x-zm-signature": sign(body, timestamp=timestamp, secret=config.webhook_secret_token),
    }
    expected = hmac.new(config.webhook_secret_token.encode(), plain.encode(), hashlib.sha256).hexdigest()
    http = session or requests.Session()
    started = time.monotonic()
    try:
        response = http.post(url, data=body, headers=headers, timeout=(5.0, 10.0))
    except requests.exceptions.SSLError as e:
        return Check(name, FAILED, f"{url}: TLS failed ({type(e).__name__})", "serve a certificate a public CA signed")
    except requests.RequestException as e:
        return Check(
            name,
            FAILED,
            f"{url} unreachable ({type(e).__name__})",
            "check DNS, the firewall and the reverse proxy in front of the web process",
        )
    finally:
        if session is None:
            http.close()
    took = time.monotonic() - started
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.status_code == 401:
        return Check(
            name,
            FAILED,
            f"{url} refused the signed challenge (HTTP 401)",
            "the server there uses another ZOOM_WEBHOOK_SECRET_TOKEN than this configuration",
        )
    if response.status_code != 200 or not isinstance(answer, dict):
        return Check(
            name,
            FAILED,
            f"{url} answered HTTP {response.status_code}, not the challenge's JSON",
            "make the proxy pass POST /webhooks/zoom to the web process",
        )
    if answer.get("plainToken") != plain or not hmac.compare_digest(str(answer.get("encryptedToken", "")), expected):
        return Check(
            name,
            FAILED,
            f"{url} answered the challenge with the wrong token",
            "the server there uses another ZOOM_WEBHOOK_SECRET_TOKEN than this configuration",
        )
    if took > ZOOM_ANSWER_SECONDS:
        return Check(
            name,
            FAILED,
            f"{url} answered in {took:.1f}s; Zoom waits {ZOOM_ANSWER_SECONDS:.0f}s",
            "find what slows the proxy or the web process",
        )
    return Check(name, OK, f"{url} answers Zoom's endpoint.url_validation ({took * 1000:.0f} ms)")


# (words in libpq's message, what to fix) for a PostgreSQL database that cannot be opened.
_POSTGRES_FIXES = (
    ("password authentication failed", "check the user and password in DATABASE_URL (or PGPASSWORD, ~/.pgpass)"),
    ("no password supplied", "put the password in DATABASE_URL (percent-encoded) or in PGPASSWORD or ~/.pgpass"),
    ("role", "check the user in DATABASE_URL: the server has no such role, or it may not log in"),
    ("does not exist", "check the database name in DATABASE_URL, or create it (createdb)"),
    ("no pg_hba.conf entry", "allow this host and user in the server's pg_hba.conf, or check sslmode"),
    ("cannot parse", "percent-encode the special characters of the password in DATABASE_URL (see above)"),
    ("invalid", "check DATABASE_URL: host, port (1-65535) and options"),
    ("resolve host", "check the host name in DATABASE_URL (and DNS)"),
    ("translate host", "check the host name in DATABASE_URL (and DNS)"),
)


def database_open_failure(path: str, error: BaseException | None) -> Check:
    """The database line when the database cannot be opened as it is: why, and the fix for that cause."""
    reason = redact_text(first_line(error)) if error is not None else f"cannot open {redact(path)}"
    if NO_TABLES in reason:
        fix = "check DATABASE_URL, or run the service once (serve, schedule or run create the tables)"
    elif not is_postgres_url(path):
        fix = "check DATABASE_URL and the directory's permissions"
    else:
        lower = reason.lower()
        fix = next(
            (fix for words, fix in _POSTGRES_FIXES if words in lower),
            "check that the PostgreSQL server is running and reachable at DATABASE_URL's host and port",
        )
    return Check("database", FAILED, reason, fix)


def run_checks(
    config: Config,
    db: Store | None,
    *,
    open_error: BaseException | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Check]:
    """Every check, in the order the checklist prints them (`open_error`: why `db` is None)."""
    checks = list(check_configuration(config))
    if db is None:
        checks.append(database_open_failure(config.database_path, open_error))
    else:
        checks.extend(check_database(db, min_free_bytes=config.alert_thresholds.min_free_disk_bytes))
    checks.extend(check_zoom(config, now=now))
    checks.append(check_public_url(config))
    return checks
