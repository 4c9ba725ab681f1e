"""CLI commands: demo."""

from __future__ import annotations

import click

from integrations.cli.context import worker_command
from integrations.demo.webinar import DemoError, run_demo
from integrations.reads.formats import hms, table_lines
from store.db import DatabaseUnavailable


@click.command()
@click.option(
    "--attendees", type=click.IntRange(1, 100_000), default=300, show_default=True, help="People in the webinar"
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.05, max=1000),
    default=1.0,
    show_default=True,
    help="Pace of the webhooks: at 1 the joins come in a 6 s burst, the rest of the webinar in 3 s",
)
@click.option(
    "--database", type=click.Path(dir_okay=False), help="Database file (default: in a new temporary directory)"
)
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulated webinar")
def demo(attendees: int, speed: float, database: str | None, seed: int) -> None:
    """Run a simulated webinar through the real pipeline: no Zoom account needed.

    Starts the web app and a Zoom API simulator on 127.0.0.1, posts signed webhooks for
    the webinar (joins in a burst, rejoins, second devices, a few deliveries lost), ends
    it, syncs the participant report from the simulator and prints what came out.
    """
    try:
        result = run_demo(
            attendees, speed=speed, database_path=database, seed=seed, progress=lambda m: click.echo(m, err=True)
        )
    except (DemoError, DatabaseUnavailable) as e:
        raise click.ClickException(str(e)) from None
    s, sent, summary = result, result.sent, result.summary
    meeting = summary["meeting"]
    recon = summary["reconciliation"]
    click.echo()
    click.echo(f'Webinar {s.webinar_id} "{meeting["topic"]}", instance {s.instance_uuid}')
    click.echo(f"{meeting['start_time']} to {meeting['end_time']} ({hms(meeting['window_seconds'])})")
    click.echo()
    click.echo("Counts from both sources")
    click.echo(
        f"  webhooks: {sent.generated:,} generated, {sent.lost} lost on the way, {sent.stored:,} stored "
        f"({sent.refused} refused after retries, {sent.retried} retried) in {sent.seconds:.1f} s; "
        f"{summary['webhook_events']:,} participant events"
    )
    click.echo(
        f"  report:   {s.report_rows:,} rows in {s.report_pages} pages, {s.api_calls} API calls to the simulator"
    )
    click.echo(
        f"  people:   {s.webhook_people:,} from webhooks alone, {summary['unique_attendees']:,} with the report; "
        f"only in webhooks {len(recon['only_in_webhooks'])}, only in the report {len(recon['only_in_report'])}, "
        f"durations differing by over a minute {len(recon['durations_differ'])}"
    )
    click.echo()
    click.echo("Summary")
    rows = [
        ("registered", summary["registered"]),
        ("unique attendees", summary["unique_attendees"]),
        ("peak concurrent", f"{summary['peak_concurrent']} at {summary['peak_at']}"),
        ("median attended", hms(summary["median_attended_seconds"])),
        ("total attended", hms(summary["total_attended_seconds"])),
        ("report complete", summary["report_complete"]),
    ]
    for line in table_lines([{"field": k, "value": v} for k, v in rows], ["field", "value"]):
        click.echo("  " + line)
    click.echo()
    click.echo(f"Attendance, top {len(s.attendees)} of {summary['unique_attendees']:,}")
    table = [{**a, "attended": hms(a["attended_seconds"]), "sources": ",".join(a["sources"])} for a in s.attendees]
    for line in table_lines(table, ["name", "email", "attended", "segments", "first_join", "last_leave", "sources"]):
        click.echo("  " + line)
    if s.funnel:
        click.echo()
        rules = s.funnel["rules"]
        click.echo(f"Funnel (min {rules['min_minutes']:g} minutes, pass {rules['pass_percent']:g} percent)")
        for line in table_lines(s.funnel["stages"], ["stage", "count"]):
            click.echo("  " + line)
    click.echo()
    click.echo(f"Database: {s.database_path}  (demo took {s.seconds:.0f} s)")
    click.echo(f"Explore:  DATABASE_URL=sqlite:///{s.database_path} {worker_command()} attendance {s.webinar_id}")
    click.echo(f"          DATABASE_URL=sqlite:///{s.database_path} {worker_command()} funnel {s.webinar_id}")
    click.echo()
    env = (
        f"DATABASE_URL=sqlite:///{s.database_path} CERT_SIGNING_KEY_FILE={s.signing_key_file} "
        "PUBLIC_BASE_URL=http://127.0.0.1:8000"
    )
    click.echo(f"Certificates: {s.certificates_issued:,} issued (stage attended, stored rules). Render, serve, verify:")
    click.echo(f"  {env} {worker_command()} certificates pdf {s.webinar_id} --out ./demo-certificates")
    click.echo(f"  {env} {worker_command()} serve")
    click.echo("  then scan a PDF's QR code or open its link; revoke one with")
    click.echo(f"  {env} {worker_command()} certificates revoke 1 --reason 'demo'")


commands: list[click.Command] = [demo]
