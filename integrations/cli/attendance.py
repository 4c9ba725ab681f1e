"""CLI commands: attendance (meetings, attendance, summary, timeline, rebuild).

Every command takes `--format table|csv|json`; without it, a terminal gets a table and a
pipe or file gets JSON (what scripts want). MEETING is a numeric meeting or webinar ID
(its latest instance unless `--instance UUID`) or an instance UUID.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from integrations.cli.context import FINITE_MINUTES, PERCENT, App, pass_app, user_errors
from integrations.cli.output import format_option, output_format, write_csv, write_data, write_table
from integrations.derived.rebuild import rebuild_attendance
from integrations.funnel.stages import stored_threshold
from integrations.reads import attendance as reads
from integrations.reads.formats import display_cell, hms
from store.attendance_queries import BadQuery, Threshold, instance_uuids_of
from store.attendance_queries import attendance as attendance_of
from store.attendance_queries import summary as summary_of
from store.attendance_queries import timeline as timeline_of
from store.db import Store
from store.derived import RefreshStats


def meeting_options(f: Callable) -> Callable:
    f = click.option("--instance", metavar="UUID", help="This instance of MEETING instead of its latest")(f)
    return click.argument("meeting")(f)


def threshold_options(f: Callable) -> Callable:
    f = click.option(
        "--min-percent", type=PERCENT, metavar="P", help="Eligible: attended at least P percent of the instance"
    )(f)
    return click.option(
        "--min-minutes", type=FINITE_MINUTES, metavar="N", help="Eligible: attended at least N minutes"
    )(f)


def _threshold(min_minutes: float | None, min_percent: float | None):
    try:
        return Threshold(min_minutes, min_percent)
    except BadQuery as e:
        raise click.UsageError(str(e)) from None


def _instance_and_rules(
    app: App, meeting: str, instance: str | None, threshold: Threshold
) -> tuple[Store, str, Threshold]:
    """The store, the instance MEETING names, and the threshold to apply: the option's, else
    the meeting's stored rules (`worker.py rules`)."""
    db = app.existing_store()
    uuid = reads.current_instance(db, meeting, instance)
    return db, uuid, threshold if threshold.given else stored_threshold(db, uuid)


def _heading(meeting: dict[str, Any]) -> str:
    kind = (meeting["kind"] or "meeting").capitalize()
    topic = f' "{meeting["topic"]}"' if meeting["topic"] else ""
    end = meeting["end_time"] or ("in progress" if not meeting["ended"] else "?")
    report = "report complete" if meeting["report_complete"] else "no complete report yet (webhooks only)"
    return display_cell(
        f"{kind} {meeting['meeting_id']}{topic}, instance {meeting['instance_uuid']}\n"
        f"{meeting['start_time'] or '?'} to {end} ({hms(meeting['window_seconds'])}), {report}, as of {meeting['as_of']}",
        width=1000,
    ).replace("\\n", "\n")


@click.command()
@format_option
@pass_app
def meetings(app: App, fmt: str | None) -> None:
    """List known meetings and webinars, one row per instance."""
    with user_errors():
        db = app.existing_store()
        rows = reads.current_meetings(db)
    if write_data(output_format(fmt), {"meetings": rows}, "meetings", rows, reads.MEETING_FIELDS):
        return
    if not rows:
        click.echo("no meetings stored yet")
    else:
        write_table(rows, reads.MEETING_FIELDS)


@click.command()
@meeting_options
@threshold_options
@click.option("--include-absent", is_flag=True, help="Add registrants who never joined, with 0 seconds")
@format_option
@pass_app
def attendance(
    app: App,
    meeting: str,
    instance: str | None,
    min_minutes: float | None,
    min_percent: float | None,
    include_absent: bool,
    fmt: str | None,
) -> None:
    """Who attended MEETING and for how long (merged sessions, whole seconds)."""

    threshold = _threshold(min_minutes, min_percent)
    with user_errors():
        db, uuid, threshold = _instance_and_rules(app, meeting, instance, threshold)
        result = attendance_of(db, uuid, now=reads.now_seconds(), threshold=threshold, include_absent=include_absent)
    if not write_data(output_format(fmt), result, "attendees", result["attendees"], reads.attendee_fields(result)):
        people = result["attendees"]
        click.echo(_heading(result["meeting"]))
        eligible = f", {sum(1 for a in people if a.get('eligible'))} eligible" if threshold.given else ""
        click.echo(f"{len(people)} {'person' if len(people) == 1 else 'people'}{eligible}\n")
        rows = [{**a, "attended": hms(a["attended_seconds"])} for a in people]
        columns = [
            "name",
            "email",
            "identity",
            "attended",
            "segments",
            "first_join",
            "last_leave",
            "in_meeting",
            "sources",
        ]
        write_table(rows, columns + (["eligible"] if threshold.given else []))


@click.command()
@meeting_options
@threshold_options
@format_option
@pass_app
def summary(
    app: App, meeting: str, instance: str | None, min_minutes: float | None, min_percent: float | None, fmt: str | None
) -> None:
    """Headline numbers of MEETING, and where webhooks and the report disagree."""

    threshold = _threshold(min_minutes, min_percent)
    with user_errors():
        db, uuid, threshold = _instance_and_rules(app, meeting, instance, threshold)
        result = summary_of(db, uuid, now=reads.now_seconds(), threshold=threshold)
    if not write_data(output_format(fmt), result, None, [reads.summary_row(result)], reads.SUMMARY_FIELDS):
        click.echo(_heading(result["meeting"]) + "\n")
        row = reads.summary_row(result)
        for k in ("median_attended_seconds", "total_attended_seconds"):
            if row[k] is not None:
                row[k] = f"{row[k]} ({hms(row[k])})"
        write_table([{"field": k, "value": row[k]} for k in reads.SUMMARY_FIELDS[2:]], ["field", "value"])
        for name, people in result["reconciliation"].items():
            if people:
                click.echo(f"\n{name.replace('_', ' ')}:")
                write_table(people[:50], list(people[0]))
                if len(people) > 50:
                    click.echo(f"... and {len(people) - 50} more (--format json lists all)")


@click.command()
@meeting_options
@click.option("--step", type=click.IntRange(min=1), default=60, show_default=True, help="Seconds between points")
@format_option
@pass_app
def timeline(app: App, meeting: str, instance: str | None, step: int, fmt: str | None) -> None:
    """How many people were present over time in MEETING (the concurrency curve)."""

    with user_errors():
        db = app.existing_store()
        uuid = reads.current_instance(db, meeting, instance)
        result = timeline_of(db, uuid, now=reads.now_seconds(), step=step)
    if not write_data(output_format(fmt), result, "points", result["points"], reads.TIMELINE_FIELDS):
        click.echo(_heading(result["meeting"]) + "\n")
        top = max((p["present"] for p in result["points"]), default=0) or 1
        rows = [{**p, "bar": "#" * round(40 * p["present"] / top)} for p in result["points"]]
        write_table(rows, ["time", "present", "bar"])


@click.command()
@click.argument("meeting", required=False)
@format_option
@pass_app
def rebuild(app: App, meeting: str | None, fmt: str | None) -> None:
    """Recompute the derived attendance tables from the raw evidence (all, or one MEETING)."""

    stats = RefreshStats()
    with user_errors():
        db = app.existing_store()
        uuids = instance_uuids_of(db, meeting) if meeting else None
        deliveries, done = rebuild_attendance(db, uuids, stats)
    result = {
        "instances": len(done),
        "deliveries_renormalized": deliveries,
        "rows_written": stats.rows_written,
        "transactions": stats.transactions,
        "longest_transaction_seconds": round(stats.longest_transaction, 4),
        "seconds": round(stats.seconds, 3),
    }
    fmt = output_format(fmt)
    if fmt == "json":
        click.echo(json.dumps(result, indent=2))
    elif fmt == "csv":
        write_csv([result], list(result))
    else:
        click.echo(
            f"rebuilt {result['instances']} instance(s) from {deliveries} webhook deliveries and stored reports: "
            f"{result['rows_written']} rows in {result['transactions']} transactions, {result['seconds']} s"
        )


commands: list[click.Command] = [meetings, attendance, summary, timeline, rebuild]
