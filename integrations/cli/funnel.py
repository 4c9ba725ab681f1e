"""CLI commands: the record funnel (import-registrations, rules, funnel), issue 16.

MEETING is a numeric meeting or webinar ID (its latest instance unless `--instance UUID`)
or an instance UUID, as for `attendance`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from integrations.cli.context import App, pass_app, user_errors
from integrations.cli.options import rule_options
from integrations.cli.output import emit, format_option, output_format, write_csv, write_table
from integrations.funnel.registrations import RegistrationFileError, parse_registrations
from integrations.funnel.stages import PERSON_OUTPUT, UnknownStage, refresh_funnel
from integrations.funnel.stages import funnel as funnel_of
from integrations.reads.attendance import json_chunks
from store.attendance_queries import BadQuery, Threshold, UnknownMeeting, instance_uuids_of, meeting_number
from store.registrations import rejects_of, save_import
from store.rules import RULE_FIELDS, current_rules, rules_history, set_rules


def _meeting_id(meeting: str) -> str:
    number = meeting_number(meeting)
    if number is None:
        raise click.UsageError(f"MEETING must be a numeric meeting or webinar id, got {meeting!r}")
    return number


def _refresh_known(db, meeting_id: str) -> None:
    try:
        uuids = instance_uuids_of(db, meeting_id)
    except UnknownMeeting:
        return  # no instance stored yet: nothing derived to refresh
    known = [
        u for u in uuids if db.execute("SELECT 1 FROM attendance_instances WHERE instance_uuid = ?", [u]).fetchone()
    ]
    refresh_funnel(db, known)


def rules_text(rules: dict[str, Any]) -> str:
    """The rules a funnel applied, in words: a missing rule reads "no minimum", never None."""
    if rules.get("min_minutes") is not None:
        minimum = f"min_minutes={rules['min_minutes']:g}"
    elif rules.get("min_percent") is not None:
        minimum = f"min_percent={rules['min_percent']:g}"
    else:
        minimum = "no minimum (everyone who joined attended)"
    passing = f"pass_percent={rules['pass_percent']:g}" if rules.get("pass_percent") is not None else "no pass rule"
    origin = f"version {rules['version']}" if rules.get("version") is not None else "none stored"
    if rules.get("overridden"):
        origin += f", overridden: {', '.join(rules['overridden'])}"
    return f"{minimum}, {passing} ({origin})"


@click.command(name="import-registrations")
@click.argument("meeting")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@format_option
@pass_app
def import_registrations(app: App, meeting: str, file: str, fmt: str | None) -> None:
    """Import MEETING's outside registration list (CSV with a header row and an `email` column).

    The file's bytes go into the hash chain as evidence; importing the same file again
    changes nothing. Rows without a valid email are listed, never dropped silently.
    """
    meeting_id = _meeting_id(meeting)
    with open(file, "rb") as f:
        body = f.read()
    try:
        rows, rejects = parse_registrations(body)
    except RegistrationFileError as e:
        raise click.ClickException(f"{file}: {e}") from None
    with user_errors():
        db = app.store()
        result = save_import(db, meeting_id, body=body, filename=os.path.basename(file), rows=rows, rejects=rejects)
        listed = rejects_of(db, result.import_id)
        if result.created:
            _refresh_known(db, meeting_id)
    out: dict[str, Any] = {
        "meeting": meeting_id,
        "import_id": result.import_id,
        "record_id": result.raw_id,
        "already_imported": not result.created,
        "rows": result.rows,
        "valid": result.valid,
        "new": result.new,
        "rejected": listed,
    }
    fmt = output_format(fmt)
    if fmt == "json":
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        write_csv(listed, ["line", "email", "reason"])
    else:
        state = "already imported: nothing changed" if not result.created else f"{result.new} new registrations"
        click.echo(
            f"{file}: {result.rows} rows, {result.valid} valid, {len(listed)} rejected; {state} (record {result.raw_id})"
        )
        if listed:
            write_table(listed, ["line", "email", "reason"])


@click.command()
@click.argument("meeting")
@rule_options(
    min_minutes="Attended: at least N minutes",
    min_percent="Attended: at least P percent of the instance",
    pass_percent="Passed: a quiz score of at least P percent",
)
@format_option
@pass_app
def rules(
    app: App,
    meeting: str,
    min_minutes: float | None,
    min_percent: float | None,
    pass_percent: float | None,
    fmt: str | None,
) -> None:
    """Set or show MEETING's rules: minimum attendance and pass percent (every change kept).

    Without options, prints the current rules and their history. Options not given keep
    their current value; a minimum in minutes replaces one in percent and the other way round.
    """
    meeting_id = _meeting_id(meeting)
    if pass_percent is not None and not 0 <= pass_percent <= 100:
        raise click.UsageError("--pass-percent must be between 0 and 100")
    try:
        Threshold(min_minutes, min_percent)
    except BadQuery as e:
        raise click.UsageError(str(e)) from None
    changed = False
    with user_errors():
        db = app.store()
        if any(v is not None for v in (min_minutes, min_percent, pass_percent)):
            values = {f: (current_rules(db, meeting_id) or {}).get(f) for f in RULE_FIELDS}
            if min_minutes is not None or min_percent is not None:
                values.update(min_minutes=min_minutes, min_percent=min_percent)
            if pass_percent is not None:
                values["pass_percent"] = pass_percent
            _, changed = set_rules(db, meeting_id, values)
            if changed:
                _refresh_known(db, meeting_id)
        history = rules_history(db, meeting_id)
    fields = ["id", *RULE_FIELDS, "set_at"]
    fmt = output_format(fmt)
    current = history[-1] if history else None
    if fmt == "json":
        click.echo(
            json.dumps({"meeting": meeting_id, "rules": current, "changed": changed, "history": history}, indent=2)
        )
    elif fmt == "csv":
        write_csv(history, fields)
    elif current is None:
        click.echo(f"no rules set for {meeting_id}: worker.py rules {meeting_id} --min-minutes N --pass-percent P")
    else:
        click.echo(f"rules of {meeting_id}" + (" (changed)" if changed else "") + ":")
        write_table(history, fields)


@click.command()
@click.argument("meeting")
@click.option("--instance", metavar="UUID", help="This instance of MEETING instead of its latest")
@click.option("--stage", metavar="NAME", help="List the people at this stage")
@click.option("--dropped-at", metavar="NAME", help="List those who reached the stage before NAME but not NAME")
@rule_options(
    min_minutes="For this query: attended at least N minutes",
    min_percent="For this query: attended at least P percent",
    pass_percent="For this query: passed with at least P percent",
)
@format_option
@pass_app
def funnel(
    app: App,
    meeting: str,
    instance: str | None,
    stage: str | None,
    dropped_at: str | None,
    min_minutes: float | None,
    min_percent: float | None,
    pass_percent: float | None,
    fmt: str | None,
) -> None:
    """MEETING's funnel: registered, zoom_registered, joined, attended, answered, passed.

    Uses the stored rules (`worker.py rules`) unless an option overrides one for this query.
    """
    if stage and dropped_at:
        raise click.UsageError("give --stage or --dropped-at, not both")
    overrides = {"min_minutes": min_minutes, "min_percent": min_percent, "pass_percent": pass_percent}
    with user_errors():
        db = app.store()
        try:
            result = funnel_of(db, meeting, instance=instance, overrides=overrides, stage=stage, dropped=dropped_at)
        except UnknownStage as e:  # a bad option value: a usage error (exit 2), like any other
            raise click.BadParameter(str(e), param_hint="--" + e.option.replace("_", "-")) from None
    fmt = output_format(fmt)
    listing = "people" in result
    if fmt == "json":
        emit(json_chunks(result, "people" if listing else None))
    elif fmt == "csv":
        if listing:
            write_csv(result["people"], PERSON_OUTPUT)
        else:
            write_csv(result["stages"], ["stage", "count"])
    else:
        click.echo(
            f"Funnel of {result['meeting']}, instance {result['instance_uuid']}; rules: {rules_text(result['rules'])}\n"
        )
        if listing:
            write_table(
                result["people"], ["name", "email", "attended_minutes", "score_percent", "joined", "attended", "passed"]
            )
        else:
            top = max((s["count"] for s in result["stages"]), default=0) or 1
            rows = [{**s, "bar": "#" * round(40 * s["count"] / top)} for s in result["stages"]]
            write_table(rows, ["stage", "count", "bar"])
            if result["mismatches"]:
                click.echo(f"\n{len(result['mismatches'])} mismatches (--format json lists them all)")


commands: list[click.Command] = [import_registrations, rules, funnel]
