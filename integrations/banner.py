"""The startup banner of `run`, `serve` and `schedule`: where the service is reached and what
is configured (never a secret's value), as one log block an operator reads on first run."""

from __future__ import annotations

import os

from integrations.config import Config
from integrations.ingest.spool import spool_dir
from integrations.ingest.webhook_path import WEBHOOK_PATH
from store.postgres import is_postgres_url, redact


def _is_set(value: str | None) -> str:
    return "set" if value else "NOT SET"


def banner_lines(config: Config, *, listen: str | None = None, web: bool = True, jobs: bool = True) -> list[str]:
    """The banner's lines (pure: tests read them)."""
    lines = ["attendance worker starting"]
    if web:
        if listen:
            lines.append(f"  listening on:          http://{listen} (webhook path {WEBHOOK_PATH})")
        url = f"{config.public_base_url}{WEBHOOK_PATH}"
        if config.public_base_url.startswith("https://"):
            lines.append(f"  Zoom webhook URL:      {url}")
        else:
            lines.append(
                f"  Zoom webhook URL:      {url} is not public HTTPS: set PUBLIC_BASE_URL to the https:// "
                "address of a reverse proxy in front (deploy/, docs/operations.md)"
            )
        lines.append(f"  webhook secret token:  {_is_set(config.webhook_secret_token)}")
        lines.append(
            f"  API token:             {'set' if config.api_token else 'NOT SET (read API off, /healthz says ok only)'}"
        )
    if jobs:
        zoom = config.zoom_account_id and config.zoom_client_id and config.zoom_client_secret
        lines.append(f"  Zoom API credentials:  {'set' if zoom else 'NOT SET (report polling off)'}")
    if is_postgres_url(config.database_path):
        lines.append(f"  database:              {redact(config.database_path)}")
        if web:
            lines.append("  webhook intake:        table webhook_intake (PostgreSQL)")
    else:
        lines.append(f"  database:              {os.path.abspath(config.database_path)}")
        if web:
            lines.append(f"  webhook spool:         {spool_dir(config.database_path)}")
    if jobs:
        lines.append(
            f"  schedule:              normalize every {config.normalize_interval_seconds:g}s; "
            f"report fetches {config.report_delays} after an instance ends"
        )
        lines.append(
            f"  leadership:            several workers on one database: one runs the jobs, "
            f"the others try to take over every {config.leader_retry_seconds:g}s"
        )
    return lines


def banner(config: Config, **kwargs) -> str:
    """The banner as one block of text."""
    return "\n".join(banner_lines(config, **kwargs))
