"""The one place that reads configuration: the environment, plus an optional `.env` file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(Exception):
    "Configuration is missing or invalid"


DEFAULT_REPORT_DELAYS = "30m,2h,24h"
MIN_API_TOKEN_LENGTH = 32
MAKE_A_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


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
    webhook_tolerance_seconds: int = 300
    port: int = 8000
    web_concurrency: int = 2
    # How long a webhook request may wait for the database write lock before it answers 503.
    # Zoom gives up on an answer after 3 seconds, so the bound stays well below that.
    db_lock_timeout_seconds: float = 2.0
    zoom_requests_per_second: float = 2.0
    zoom_max_retries: int = 5
    zoom_timeout_seconds: float = 30.0
    report_delays: str = DEFAULT_REPORT_DELAYS
    normalize_interval_seconds: float = 1.0
    webhook_import_delay_seconds: float = 1.0
    log_level: str = "INFO"
    # Where Zoom (and participants) reach the service over HTTPS, e.g. https://attend.example.org;
    # the startup banner prints the webhook URL from it, certificates and doctor use it too.
    public_base_url: str | None = None

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

    def __repr__(self) -> str:  # secrets never reach logs through a repr
        return f"Config(database_path={self.database_path!r}, zoom_api_base_url={self.zoom_api_base_url!r})"


def database_path_from_url(url: str) -> str:
    """Turn `sqlite:///relative.db` or `sqlite:////abs/path.db` into a filesystem path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(f"DATABASE_URL must start with {prefix!r} (only SQLite is supported), got {url!r}")
    path = url[len(prefix) :]
    if not path:
        raise ConfigError("DATABASE_URL names no file: use sqlite:///attendance.db")
    return path


def load_config(environ: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Config:
    """Read configuration from `environ` (default: the process environment and `.env`)."""
    if environ is None:
        if dotenv:
            from dotenv import load_dotenv

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
    public_base_url = text("PUBLIC_BASE_URL")
    if public_base_url is not None:
        public_base_url = public_base_url.rstrip("/")
        if not public_base_url.startswith(("https://", "http://")) or " " in public_base_url:
            errors.append(f"PUBLIC_BASE_URL must be an https:// URL, got {public_base_url!r}")
    config = Config(
        webhook_secret_token=text("ZOOM_WEBHOOK_SECRET_TOKEN"),
        zoom_account_id=text("ZOOM_ACCOUNT_ID"),
        zoom_client_id=text("ZOOM_CLIENT_ID"),
        zoom_client_secret=text("ZOOM_CLIENT_SECRET"),
        zoom_api_base_url=(text("ZOOM_API_BASE_URL") or Config.zoom_api_base_url).rstrip("/"),
        zoom_oauth_token_url=text("ZOOM_OAUTH_TOKEN_URL") or Config.zoom_oauth_token_url,
        database_path=database_path,
        api_token=api_token,
        webhook_tolerance_seconds=int(number("WEBHOOK_TOLERANCE_SECONDS", 300, int)),
        port=int(number("PORT", 8000, int)),
        web_concurrency=max(1, int(number("WEB_CONCURRENCY", 2, int))),
        db_lock_timeout_seconds=number("DB_LOCK_TIMEOUT_SECONDS", 2.0),
        zoom_requests_per_second=number("ZOOM_REQUESTS_PER_SECOND", 2.0),
        zoom_max_retries=int(number("ZOOM_MAX_RETRIES", 5, int)),
        zoom_timeout_seconds=number("ZOOM_TIMEOUT_SECONDS", 30.0),
        report_delays=text("REPORT_FETCH_DELAYS") or DEFAULT_REPORT_DELAYS,
        normalize_interval_seconds=number("NORMALIZE_INTERVAL_SECONDS", 1.0),
        webhook_import_delay_seconds=number("WEBHOOK_IMPORT_DELAY_SECONDS", 1.0),
        log_level=(text("LOG_LEVEL") or "INFO").upper(),
        public_base_url=public_base_url,
    )
    if errors:
        raise ConfigError("; ".join(errors))
    return config
