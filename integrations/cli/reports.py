"""CLI commands: reports (track, sync, get, poll-status)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from integrations.cli.context import App, pass_app
from integrations.config import Config, ConfigError
from integrations.reports.sync import DAILY_LIMIT_STATE, sync_meeting
from integrations.zoom.client import (
    DailyLimitError,
    NotFound,
    ReportTooOld,
    ZoomAuthError,
    ZoomClient,
    ZoomError,
)
from integrations.zoom.reports import fetch_pages
from store.events import get_state
from store.reports import schedule_rows
from store.reports import track as track_meeting


@contextmanager
def _client(config: Config) -> Iterator[ZoomClient]:
    try:
        client = ZoomClient.from_config(config)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    try:
        yield client
    except ZoomAuthError as e:
        raise click.ClickException(f"bad credentials: {e}") from None
    except NotFound as e:
        raise click.ClickException(f"unknown meeting or instance: {e}") from None
    except ReportTooOld as e:
        raise click.ClickException(f"report too old: {e}") from None
    except DailyLimitError as e:
        raise click.ClickException(f"daily limit: {e}") from None
    except ZoomError as e:
        raise click.ClickException(f"Zoom API: {e}") from None
    finally:
        client.close()


@click.command()
@click.argument("meeting_id")
@click.option("--kind", type=click.Choice(["meeting", "webinar"]), help="Say which it is (else found on first sync)")
@click.option("--topic", help="A name to show for it")
@pass_app
def track(app: App, meeting_id: str, kind: str | None, topic: str | None) -> None:
    """Poll reports of a meeting or webinar ID from now on (webhooks add them by themselves)."""
    if not meeting_id.isdigit():
        raise click.ClickException(f"meeting and webinar IDs are numbers, got {meeting_id!r}")
    track_meeting(app.store(normalize=True), meeting_id, kind=kind, topic=topic, source="cli")
    click.echo(
        f"tracking {kind or 'meeting or webinar'} {meeting_id}: the worker fetches reports of its instances as they end"
    )


@click.command()
@click.argument("meeting_id")
@click.option("--instance", "instance_uuid", help="Fetch only this instance UUID")
@click.option("--kind", type=click.Choice(["meeting", "webinar"]), help="Say which it is (else asked from Zoom)")
@click.option("--no-registrants", is_flag=True, help="Skip a webinar's registrants")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr")
@pass_app
def sync(
    app: App, meeting_id: str, instance_uuid: str | None, kind: str | None, no_registrants: bool, quiet: bool
) -> None:
    """Fetch participant reports now: every past instance of MEETING_ID, or one with --instance."""
    progress = None if quiet else (lambda message: click.echo(message, err=True))
    # Webhooks already stored may name instances (and their kind) this command needs.
    db = app.store(normalize=True)
    with _client(app.config) as client:
        result = sync_meeting(
            db,
            client,
            meeting_id,
            instance_uuid=instance_uuid,
            kind=kind,
            registrants=not no_registrants,
            progress=progress,
        )
        click.echo(f"{result.kind} {meeting_id}: {len(result.fetches)} instance(s) fetched")
        for fetch in result.fetches:
            unprocessed = f", {fetch.zero_duration_rows} not processed by Zoom yet" if fetch.zero_duration_rows else ""
            click.echo(
                f"  {fetch.instance_uuid}: {fetch.pages} pages, {fetch.rows} rows ({fetch.new_rows} new){unprocessed}"
            )
        if result.registrants is not None:
            r = result.registrants
            statuses = ", ".join(f"{status} {n}" for status, n in sorted(r.by_status.items()))
            click.echo(f"  registrants: {r.registrants} ({statuses or 'none'}; {r.new} new), {r.pages} pages")
        click.echo(f"  API calls: {client.api_calls}, token requests: {client.token_requests}")
        if result.failures:
            reasons = "; ".join(
                f"{uuid}: {'report too old' if isinstance(error, ReportTooOld) else 'not found'} ({error})"
                for uuid, error in result.failures
            )
            raise click.ClickException(f"{len(result.failures)} instance report(s) not available: {reasons}")


@click.command()
@click.argument("path")
@click.option("--param", "-p", "params", multiple=True, help="Query parameter name=value (repeatable)")
@click.option("--paginate", is_flag=True, help="Follow next_page_token; one page of JSON per line")
@pass_app
def get(app: App, path: str, params: tuple[str, ...], paginate: bool) -> None:
    """Print the raw JSON Zoom answers for an API PATH, e.g. `get /past_webinars/123/instances`."""
    query: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.ClickException(f"--param takes name=value, got {item!r}")
        query[name] = value
    with _client(app.config) as client:
        if not paginate:
            response = client.get(path, query)
            sys.stdout.buffer.write(response.body + b"\n")
            return
        for page in fetch_pages(client, path, "", query, max_restarts=0):
            sys.stdout.buffer.write(page.body + b"\n")


@click.command(name="poll-status")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
@pass_app
def poll_status(app: App, limit: int, as_json: bool) -> None:
    """Show the report poller's schedule: what is due when, what failed and why."""
    db = app.existing_store(normalize=True)
    rows = schedule_rows(db, limit=limit)
    paused = get_state(db, DAILY_LIMIT_STATE)
    if as_json:
        click.echo(json.dumps({"daily_limit_until": paused, "schedule": rows}, indent=2))
        return
    if paused:
        click.echo(f"daily limit pause until {paused}")
    if not rows:
        click.echo("nothing scheduled")
    for row in rows:
        error = f"  ({row['last_error']})" if row["last_error"] else ""
        due = row["due_at"] or "-"
        click.echo(
            f"{row['status']:8} {due:28} {row['kind'] or '?':8} {row['meeting_id'] or '?':>12} {row['instance_uuid']}{error}"
        )


commands: list[click.Command] = [track, sync, get, poll_status]
