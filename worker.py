"""Attendance worker for Zoom: command-line entry point.

`python worker.py --help` lists the commands. Configuration comes from the environment
and `.env` (see config.example.env).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import click

from integrations.config import Config, ConfigError, load_config


def get_config() -> Config:
    """Load configuration, as one clear line on error."""
    try:
        return load_config()
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def gunicorn_command(config: Config, *, bind: str | None = None, workers: int | None = None) -> list[str]:
    """The gunicorn command line of the Procfile's `web` process."""
    workers = workers or config.web_concurrency
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(workers),
        # Threads let a process's concurrent webhooks share one commit and fsync (issue 6).
        "--worker-class",
        "gthread",
        "--threads",
        "16",
        "--bind",
        bind or f"0.0.0.0:{config.port}",
        "--graceful-timeout",
        "20",
        # gunicorn 27's control socket has one default path per user: several servers collide.
        "--no-control-socket",
        "integrations.web:create_app()",
    ]


@click.group()
@click.version_option("0.1.0", prog_name="attendance-worker")
def cli() -> None:
    """Attendance worker for Zoom: receive webhooks, poll reports, prove attendance."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=int, help="Port (default: PORT, else 8000)")
@click.option("--workers", type=int, help="gunicorn worker processes (default: WEB_CONCURRENCY, else 2)")
def serve(host: str, port: int | None, workers: int | None) -> None:
    """Run the web app (webhooks, read API) under gunicorn."""
    config = get_config()
    command = gunicorn_command(config, bind=f"{host}:{port or config.port}", workers=workers)
    os.execv(command[0], command)


@cli.command()
def schedule() -> None:
    """Run the scheduler (normalization, report polling): the Procfile `worker`."""
    from integrations.jobs.scheduler import run_scheduler
    from integrations.web import configure_logging

    config = get_config()
    configure_logging(config.log_level)
    run_scheduler(config)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=int, help="Port (default: PORT, else 8000)")
def run(host: str, port: int | None) -> None:
    """Run web app and scheduler together: the embedded single-machine default."""
    from integrations.jobs.scheduler import run_scheduler
    from integrations.web import configure_logging

    config = get_config()
    configure_logging(config.log_level)
    web = subprocess.Popen(gunicorn_command(config, bind=f"{host}:{port or config.port}"))
    watcher = threading.Thread(target=lambda: (web.wait(), os.kill(os.getpid(), 15)), daemon=True)
    watcher.start()
    try:
        run_scheduler(config)
    finally:
        if web.poll() is None:
            web.terminate()
            web.wait(timeout=30)


@cli.command()
def normalize() -> None:
    """Normalize stored webhook deliveries now (the worker does this every second)."""
    from integrations.ingest.normalize import normalize_pending
    from store.db import open_db
    from store.migrations import migrate

    config = get_config()
    db = open_db(config.database_path)
    migrate(db)
    affected = normalize_pending(db)
    click.echo(f"normalized deliveries for {len(affected)} instance(s)")


@cli.command()
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
def problems(limit: int, as_json: bool) -> None:
    """List deliveries operators should look at: unparseable bodies, stale timestamps."""
    from integrations.ingest.normalize import normalize_pending
    from store.db import open_db
    from store.events import problems as list_problems
    from store.migrations import migrate

    config = get_config()
    db = open_db(config.database_path)
    migrate(db)
    normalize_pending(db)
    rows = list_problems(db, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no problems")
    for row in rows:
        what = row["parse_error"] or "stale timestamp"
        flag = " [stale timestamp]" if row["stale_timestamp"] and row["parse_error"] else ""
        click.echo(f"#{row['id']} {row['received_at']} {row['event'] or '-'}: {what}{flag}")


def _add_area_commands() -> None:
    from integrations.cli import attendance, audit, demo, reports

    for module in (reports, attendance, audit, demo):
        for command in module.commands:
            cli.add_command(command)


_add_area_commands()

if __name__ == "__main__":
    cli()
