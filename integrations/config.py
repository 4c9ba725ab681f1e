"""The one place that reads configuration: the environment, plus an optional `.env` file.

`load_config()` returns a frozen `Config` and names every missing or invalid variable at
once; everything else receives values as arguments. Each variable is documented in
config.example.env."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from dotenv import load_dotenv

from integrations.reports.plan import parse_delays
from store.postgres import is_postgres_url, redact


class ConfigError(Exception):
    "Configuration is missing or invalid"


DEFAULT_REPORT_DELAYS = "30m,2h,24h"
MIN_API_TOKEN_LENGTH = 32
MAKE_A_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
MEGABYTE = 1024 * 1024
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class AlertThresholds:
    """The bounds past which a condition is an alert (ALERT_* settings), in the units alerts compare."""

    silence_seconds: float = 5.0 * 60
    import_lag_seconds: float = 60.0
    sync_failures: int = 3
    min_free_disk_bytes: float = 1024.0 * MEGABYTE
    api_budget_percent: float = 10.0


@dataclass(frozen=True)
class Config:
    """Every setting the service uses; built only by `load_config`."""

    webhook_secret_token: str | None = None
    zoom_account_id: str | None = None
    zoom_client_id: str | None = None
    zoom_client_secret: str | None = field(default=None, repr=False)
    zoom_api_base_url: str = "https://api.zoom.us/v2"
    zoom_oauth_token_url: str = "https://zoom.us/oauth/token"
    database_path: str = "attendance.db"
    api_token: str | None = field(default=None, repr=False)
    # Signs the dashboard's session cookie; without it the dashboard refuses to serve.
    secret_key: str | None = field(default=None, repr=False)
    # Honour X-Forwarded-Proto/-For from one reverse proxy in front (TLS terminated there).
    trust_proxy_headers: bool = False
    webhook_tolerance_seconds: int = 300
    port: int = 8000
    web_concurrency: int = 2
    # How long a webhook request may wait for the database write lock before it answers 503.
    # Zoom gives up on an answer after 3 seconds, so the bound stays well below that.
    db_lock_timeout_seconds: float = 2.0
    zoom_requests_per_second: float = 2.0
    zoom_heavy_requests_per_second: float = 1.0
    zoom_max_retries: int = 5
    zoom_timeout_seconds: float = 30.0
    report_delays: str = DEFAULT_REPORT_DELAYS
    normalize_interval_seconds: float = 1.0
    # Issue 19: how often a worker that does not lead tries to take the lead (and the leader checks it still does).
    leader_retry_seconds: float = 5.0
    webhook_import_delay_seconds: float = 1.0
    log_level: str = "INFO"
    # E-certificates (issue 17)
    cert_signing_key_file: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    # False when PUBLIC_BASE_URL is unset: the URL above is then this machine at PORT, and a
    # server started with --port moves it there (served_at).
    public_base_url_set: bool = False
    cert_template_file: str | None = None
    cert_send_per_minute: float = 30.0
    cert_verify_per_minute: float = 30.0
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_starttls: bool = True
    # PEM certificates STARTTLS trusts instead of the system's (a private CA, a self-signed server).
    smtp_ca_file: str | None = None
    log_format: str = "text"  # text | json (one JSON object a line, issue 18)
    # Issue 18: /metrics, the alerts the worker raises itself, `doctor`.
    metrics_token: str | None = field(default=None, repr=False)
    metrics_dir: str = "attendance.db-metrics"
    alert_webhook_url: str | None = field(default=None, repr=False)
    alert_check_interval_seconds: float = 30.0
    alert_thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    zoom_daily_api_limit: int = 30_000

    def require_zoom_api(self) -> None:
        """Raise ConfigError naming every variable the Zoom REST API needs and lacks."""
        missing = [
            name
            for name, value in (
                ("ZOOM_ACCOUNT_ID", self.zoom_account_id),
                ("ZOOM_CLIENT_ID", self.zoom_client_id),
                ("ZOOM_CLIENT_SECRET", self.zoom_client_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigError("Zoom API credentials missing: set " + ", ".join(missing) + " (see config.example.env)")

    def served_at(self, port: int) -> Config:
        """This configuration for a server listening on `port`: PUBLIC_BASE_URL, when set, wins."""
        if self.public_base_url_set:
            return replace(self, port=port)
        return replace(self, port=port, public_base_url=local_base_url(port))

    def __repr__(self) -> str:  # secrets never reach logs through a repr
        return f"Config(database_path={redact(self.database_path)!r}, zoom_api_base_url={self.zoom_api_base_url!r})"


def local_base_url(port: int) -> str:
    """This machine's address at `port`: PUBLIC_BASE_URL's value when it is unset."""
    return f"http://127.0.0.1:{port}"


def database_path_from_url(url: str) -> str:
    """Turn `sqlite:///relative.db` or `sqlite:////abs/path.db` into a filesystem path;
    a `postgresql://` URL stays as it is (store/postgres.py)."""
    prefix = "sqlite:///"
    if is_postgres_url(url):
        return url
    if not url.startswith(prefix):
        raise ConfigError(
            f"DATABASE_URL must start with {prefix!r}, 'postgresql://' or 'postgres://', got {redact(url)!r}"
        )
    path = url[len(prefix) :]
    if not path:
        raise ConfigError("DATABASE_URL names no file: use sqlite:///attendance.db")
    return path


def load_config(environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Config:
    """Read configuration from `environ` (default: the process environment and `.env`)."""
    if environ is None:
        if dotenv:
            # Real environment variables win over .env, as operators expect.
            load_dotenv(Path.cwd() / ".env", override=False)
        environ = os.environ
    errors: list[str] = []

    def text(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

    def number(name: str, default: float, kind: type = float) -> float:
        raw = text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            errors.append(f"{name} must be a number, got {raw!r}")
            return default
        if value < 0:
            errors.append(f"{name} must not be negative, got {raw!r}")
        return value

    def flag(name: str, default: bool = False) -> bool:
        raw = text(name)
        if raw is None:
            return default
        raw = raw.lower()
        if raw not in ("0", "1", "true", "false", "yes", "no"):
            errors.append(f"{name} must be 1 or 0, got {raw!r}")
            return default
        return raw in ("1", "true", "yes")

    port = int(number("PORT", 8000, int))
    if port == 0 or port > 65535:  # a negative one is already named above
        errors.append(f"PORT must be a port number from 1 to 65535, got {text('PORT')!r}")
        port = 8000
    public_base_url = (text("PUBLIC_BASE_URL") or local_base_url(port)).rstrip("/")
    if not public_base_url.startswith(("http://", "https://")):
        errors.append(f"PUBLIC_BASE_URL must start with http:// or https://, got {public_base_url!r}")
    try:
        database_path = database_path_from_url(text("DATABASE_URL") or "sqlite:///attendance.db")
    except ConfigError as e:
        errors.append(str(e))
        database_path = "attendance.db"
    api_token = text("API_TOKEN")
    if api_token is not None and len(api_token) < MIN_API_TOKEN_LENGTH:
        errors.append(
            f"API_TOKEN must be at least {MIN_API_TOKEN_LENGTH} characters (it has {len(api_token)}); "
            f"make one with: {MAKE_A_TOKEN}"
        )
    requests_per_second = number("ZOOM_REQUESTS_PER_SECOND", 2.0)
    config = Config(
        webhook_secret_token=text("ZOOM_WEBHOOK_SECRET_TOKEN"),
        zoom_account_id=text("ZOOM_ACCOUNT_ID"),
        zoom_client_id=text("ZOOM_CLIENT_ID"),
        zoom_client_secret=text("ZOOM_CLIENT_SECRET"),
        zoom_api_base_url=(text("ZOOM_API_BASE_URL") or Config.zoom_api_base_url).rstrip("/"),
        zoom_oauth_token_url=text("ZOOM_OAUTH_TOKEN_URL") or Config.zoom_oauth_token_url,
        database_path=database_path,
        api_token=api_token,
        secret_key=text("SECRET_KEY"),
        trust_proxy_headers=flag("TRUST_PROXY_HEADERS"),
        webhook_tolerance_seconds=int(number("WEBHOOK_TOLERANCE_SECONDS", 300, int)),
        port=port,
        web_concurrency=max(1, int(number("WEB_CONCURRENCY", 2, int))),
        db_lock_timeout_seconds=number("DB_LOCK_TIMEOUT_SECONDS", 2.0),
        zoom_requests_per_second=requests_per_second,
        # Heavy endpoints (poll reports) allow half of Medium's rate: half the pace by default.
        zoom_heavy_requests_per_second=number("ZOOM_HEAVY_REQUESTS_PER_SECOND", requests_per_second / 2),
        zoom_max_retries=int(number("ZOOM_MAX_RETRIES", 5, int)),
        zoom_timeout_seconds=number("ZOOM_TIMEOUT_SECONDS", 30.0),
        report_delays=text("REPORT_FETCH_DELAYS") or DEFAULT_REPORT_DELAYS,
        normalize_interval_seconds=number("NORMALIZE_INTERVAL_SECONDS", 1.0),
        # Above 30 s the take-over after a leader dies would pass a minute (docs/scaling.md).
        leader_retry_seconds=min(30.0, max(0.1, number("LEADER_RETRY_SECONDS", 5.0))),
        webhook_import_delay_seconds=number("WEBHOOK_IMPORT_DELAY_SECONDS", 1.0),
        log_level=(text("LOG_LEVEL") or "INFO").upper(),
        cert_signing_key_file=text("CERT_SIGNING_KEY_FILE"),
        public_base_url=public_base_url,
        public_base_url_set=text("PUBLIC_BASE_URL") is not None,
        cert_template_file=text("CERT_TEMPLATE_FILE"),
        cert_send_per_minute=number("CERT_SEND_PER_MINUTE", 30.0),
        cert_verify_per_minute=number("CERT_VERIFY_PER_MINUTE", 30.0),
        smtp_host=text("SMTP_HOST"),
        smtp_port=int(number("SMTP_PORT", 587, int)),
        smtp_username=text("SMTP_USERNAME"),
        smtp_password=text("SMTP_PASSWORD"),
        smtp_from=text("SMTP_FROM"),
        smtp_starttls=flag("SMTP_STARTTLS", True),
        smtp_ca_file=text("SMTP_CA_FILE"),
        log_format=(text("LOG_FORMAT") or "text").lower(),
        metrics_token=text("METRICS_TOKEN"),
        # Beside a SQLite file, like the spool: the web processes and the worker share it; in the working directory for a PostgreSQL URL (per host).
        metrics_dir=text("PROMETHEUS_MULTIPROC_DIR")
        or os.path.abspath("attendance" if is_postgres_url(database_path) else database_path) + "-metrics",
        alert_webhook_url=text("ALERT_WEBHOOK_URL"),
        alert_check_interval_seconds=max(1.0, number("ALERT_CHECK_INTERVAL_SECONDS", 30.0)),
        alert_thresholds=AlertThresholds(
            silence_seconds=number("ALERT_SILENCE_MINUTES", 5.0) * 60,
            import_lag_seconds=number("ALERT_IMPORT_LAG_SECONDS", 60.0),
            sync_failures=max(1, int(number("ALERT_SYNC_FAILURES", 3, int))),
            min_free_disk_bytes=number("ALERT_MIN_FREE_DISK_MB", 1024.0) * MEGABYTE,
            api_budget_percent=number("ALERT_API_BUDGET_PERCENT", 10.0),
        ),
        zoom_daily_api_limit=int(number("ZOOM_DAILY_API_LIMIT", 30_000, int)),
    )
    errors.extend(_bad_choices(config))
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def _bad_choices(config: Config) -> list[str]:
    """What is wrong with the settings that take one of a few forms (checked once they are read)."""
    errors = []
    try:
        parse_delays(config.report_delays)
    except ValueError as e:
        errors.append(f"REPORT_FETCH_DELAYS: {e}")
    if config.log_level not in (*LOG_LEVELS, "WARN"):  # logging takes WARN too
        errors.append(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    if config.log_format not in ("text", "json"):
        errors.append(f"LOG_FORMAT must be text or json, got {config.log_format!r}")
    return errors
