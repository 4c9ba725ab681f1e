"""CLI commands: the service's processes (serve, schedule, run) and normalize, problems."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading

import click

from integrations.banner import banner
from integrations.cli.context import App, pass_app
from integrations.config import Config
from integrations.ingest.normalize import normalize_pending
from integrations.jobs.scheduler import run_scheduler
from integrations.web import configure_logging
from store.events import problems as list_problems


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
        # gthread whose event loop reads whole requests before a thread runs the app: slow
        # clients cannot hold the threads (issue 14, integrations/web/server.py).
        "integrations.web.server.BufferingWorker",
        "--threads",
        "16",
        "--bind",
        bind or f"0.0.0.0:{config.port}",
        "--graceful-timeout",
        "20",
        # gunicorn 27's control socket has one default path per user: several servers collide.
        "--no-control-socket",
        # `worker.py run` works from any directory.
        "--chdir",
        ROOT,
        # Prometheus multiprocess mode across the workers (issue 18).
        "--config",
        "python:integrations.web.gunicorn_conf",
        "integrations.web:create_app()",
    ]


log = logging.getLogger(__name__)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def gunicorn_environment() -> dict[str, str]:
    """This environment with the checkout first on PYTHONPATH: gunicorn imports its `--config`
    module before it changes to `--chdir`, so from another directory it would not find it."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": ROOT + (os.pathsep + path if path else "")}


host_option = click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
port_option = click.option("--port", type=click.IntRange(1, 65535), help="Port (default: PORT, else 8000)")


@click.command()
@host_option
@port_option
@click.option("--workers", type=int, help="gunicorn worker processes (default: WEB_CONCURRENCY, else 2)")
@pass_app
def serve(app: App, host: str, port: int | None, workers: int | None) -> None:
    """Run the web app (webhooks, read API) under gunicorn."""
    app.store()  # a bad DATABASE_URL is one line, not a traceback in every gunicorn worker
    app.close()
    config = app.config.served_at(port or app.config.port)
    configure_logging(config.log_level)
    bind = f"{host}:{config.port}"
    log.info(banner(config, listen=bind, jobs=False))
    command = gunicorn_command(config, bind=bind, workers=workers)
    os.execve(command[0], command, gunicorn_environment())


@click.command()
@pass_app
def schedule(app: App) -> None:
    """Run the scheduler (normalization, report polling): the Procfile `worker`."""
    configure_logging(app.config.log_level, app.config.log_format)
    app.store()  # a bad DATABASE_URL is one line, not a traceback
    log.info(banner(app.config, web=False))
    run_scheduler(app.config)


@click.command()
@host_option
@port_option
@pass_app
def run(app: App, host: str, port: int | None) -> None:
    """Run web app and scheduler together: the embedded single-machine default."""
    config = app.config.served_at(port or app.config.port)
    configure_logging(config.log_level, config.log_format)
    app.store()  # a bad DATABASE_URL is one line here, not a traceback in every gunicorn worker
    stop = threading.Event()
    bind = f"{host}:{config.port}"
    log.info(banner(config, listen=bind))
    web = subprocess.Popen(gunicorn_command(config, bind=bind), env=gunicorn_environment())

    def watch() -> None:
        web.wait()
        if not stop.is_set():
            log.error("the web process exited with code %s: stopping", web.returncode)
            stop.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        run_scheduler(config, stop)
    finally:
        if web.poll() is None:
            web.send_signal(signal.SIGTERM)  # gunicorn finishes in-flight requests first
            try:
                web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait()
    if web.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
        raise click.ClickException(f"the web process exited with code {web.returncode}")


@click.command()
@pass_app
def normalize(app: App) -> None:
    """Normalize stored webhook deliveries now (the worker does this every second)."""
    affected = normalize_pending(app.store())
    click.echo(f"normalized deliveries for {len(affected)} instance(s)")


@click.command()
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
@pass_app
def problems(app: App, limit: int, as_json: bool) -> None:
    """List deliveries operators should look at: unparseable bodies, stale timestamps."""
    rows = list_problems(app.existing_store(normalize=True), limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no problems")
    for row in rows:
        what = row["parse_error"] or "stale timestamp"
        flag = " [stale timestamp]" if row["stale_timestamp"] and row["parse_error"] else ""
        click.echo(f"#{row['id']} {row['received_at']} {row['event'] or '-'}: {what}{flag}")


commands: list[click.Command] = [serve, schedule, run, normalize, problems]
