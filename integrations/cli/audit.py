"""CLI commands: audit (verify, export-raw, evidence, backup)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import NoReturn

import click

from integrations.audit.bundle import BundleError, build_bundle
from integrations.audit.export import FORMATS, check_meeting, meeting_filter, parse_bound
from integrations.audit.export_parallel import default_workers, export_to_fd
from integrations.cli.context import App, pass_app, user_errors, worker_command
from integrations.cli.options import rule_options
from integrations.files import OutputError, private_output, private_output_path
from store.attendance_queries import Threshold
from store.audit import ChainError, verify_file
from store.backup import BackupError, backup_database, check_backup_target, check_command
from store.certificates import CertificateChainError, verify_certificate_chain

database_option = click.option(
    "--database",
    "database",
    type=click.Path(dir_okay=False),
    help="SQLite file or PostgreSQL URL to read (default: DATABASE_URL); e.g. a backup handed to an auditor",
)


force_option = click.option("--force", is_flag=True, help="Replace the output file if it exists")


@click.command()
@database_option
@click.option(
    "--head",
    "expect_head",
    metavar="HASH",
    help="Also require this chain head (e.g. from an evidence MANIFEST) to be in the chain",
)
@click.option("--json", "as_json", is_flag=True, help="Output JSON")
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=16),
    help="Processes checking ranges of the log (default: the cores available, at most 4)",
)
@pass_app
def verify(app: App, database: str | None, expect_head: str | None, as_json: bool, workers: int | None) -> None:
    """Recompute the hash chain of every raw record; exit 1 naming the first record that does not match."""
    app.readonly_store(database)  # one clear line if it cannot be read
    started = time.monotonic()
    try:
        head = verify_file(app.database_path(database), expect_head=expect_head, workers=workers or default_workers())
    except ChainError as e:
        _verify_failed(as_json, "raw_records", e, e.record_id)
    try:
        # Certificate issuance and revocation: their own chain (store/certificates.py, issue 17).
        certificate_events, certificate_head = verify_certificate_chain(app.readonly_store(database))
    except CertificateChainError as e:
        _verify_failed(as_json, "certificate_events", e, None)
    seconds = time.monotonic() - started
    if as_json:
        result = {
            "ok": True,
            "records": head.count,
            "head_record_id": head.record_id,
            "head": head.chain_hash,
            "expected_head_found": expect_head is not None,
            "certificate_events": certificate_events,
            "certificate_head": certificate_head,
        }
        click.echo(json.dumps(result))
        return
    click.echo(
        f"OK {head.count} records, head {head.chain_hash}" + (f" (record {head.record_id})" if head.record_id else "")
    )
    if expect_head:
        click.echo(f"expected head {expect_head} is in the chain")
    if certificate_events:
        click.echo(f"OK certificate events {certificate_events}, head {certificate_head}")
    click.echo(f"checked in {seconds:.1f}s", err=True)


def _verify_failed(as_json: bool, chain: str, error: Exception, record_id: int | None) -> NoReturn:
    """Exit 1 naming what does not match; with --json the same answer is JSON on stdout first."""
    if as_json:
        click.echo(json.dumps({"ok": False, "chain": chain, "record_id": record_id, "reason": str(error)}))
    raise click.ClickException(f"FAILED: {error}")


@click.command(name="export-raw")
@database_option
@click.option("--meeting", metavar="MEETING", help="Only this instance UUID, or every instance of this meeting number")
@click.option(
    "--since", metavar="T", help="Only records received at or after T (ISO 8601, UTC unless an offset is given)"
)
@click.option("--until", metavar="T", help="Only records received before T")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl", show_default=True)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE (owner-only, must be new) instead of stdout")
@force_option
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=16),
    help="Processes formatting the log (default: the cores available, at most 4; 1 = this process only)",
)
@pass_app
def export_raw(
    app: App,
    database: str | None,
    meeting: str | None,
    since: str | None,
    until: str | None,
    fmt: str,
    output: str | None,
    force: bool,
    workers: int | None,
) -> None:
    """Export the raw join log: every stored delivery and report row, with `raw` as received (JSONL) or as CSV."""
    bounds = {}
    for name, value in (("--since", since), ("--until", until)):
        try:
            bounds[name] = parse_bound(value) if value else None
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint=name) from None
    since_at, until_at = bounds["--since"], bounds["--until"]
    db = app.readonly_store(database)  # one clear line if it cannot be read
    started = time.monotonic()
    filters = {"meeting": meeting_filter(meeting), "since": since_at, "until": until_at}
    with user_errors():  # a meeting nothing names is exit 1, not an empty export
        check_meeting(db.conn, filters["meeting"])
    try:
        if output in (None, "-"):
            sys.stdout.flush()
            written = export_to_fd(app.database_path(database), fmt, sys.stdout.fileno(), workers=workers, **filters)
        else:
            with private_output(output, force=force, prefix=".export-") as f:
                written = export_to_fd(app.database_path(database), fmt, f.fileno(), workers=workers, **filters)
    except BrokenPipeError:
        # The reader went away (`export-raw | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OutputError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot write {output or 'stdout'}: {e}") from None
    if output not in (None, "-"):
        click.echo(f"wrote {written:,} bytes of {fmt} to {output} in {time.monotonic() - started:.1f}s", err=True)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@database_option
@force_option
@pass_app
def backup(app: App, file: str, database: str | None, force: bool) -> None:
    """Write a consistent, owner-only copy of the live database to FILE (safe while the service runs)."""
    db = app.existing_store(database)
    started = time.monotonic()
    try:
        check_backup_target(db, file)
        with private_output_path(file, force=force, prefix=".backup-") as temporary:
            head = backup_database(db, temporary)
    except (BackupError, OutputError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"backed up {head.count} records (head {head.chain_hash}) to {file} in {time.monotonic() - started:.1f}s"
    )
    click.echo(f"check the copy: {check_command(db, file, head, worker_command())}", err=True)


@click.command()
@click.argument("meeting")
@click.option(
    "--output",
    "-o",
    required=True,
    metavar="DIR|FILE.zip",
    help="New directory, or a .zip file, to write the bundle to",
)
@click.option("--instance", metavar="UUID", help="This instance of MEETING instead of its latest")
@force_option
@rule_options("Eligible: attended at least N minutes", "Eligible: attended at least P percent of the instance")
@database_option
@pass_app
def evidence(
    app: App,
    meeting: str,
    output: str,
    instance: str | None,
    min_minutes: float | None,
    force: bool,
    min_percent: float | None,
    database: str | None,
) -> None:
    """Write the evidence bundle of MEETING for an auditor: attendance, summary, raw log, registrants, MANIFEST, README."""
    db = app.existing_store(database)
    try:
        with user_errors():
            bundle = build_bundle(
                db, meeting, output, instance=instance, threshold=Threshold(min_minutes, min_percent), force=force
            )
    except BundleError as e:
        raise click.ClickException(str(e)) from None
    click.echo(
        f"wrote evidence for meeting {bundle.meeting_id} instance {bundle.instance_uuid} to {output}: {len(bundle.files) + 1} files"
    )
    click.echo(f"chain head {bundle.head.chain_hash} (record {bundle.head.record_id}, {bundle.head.count} records)")
    click.echo(f"MANIFEST sha256 {bundle.manifest_sha256} (send it to the auditor separately)")


commands: list[click.Command] = [verify, export_raw, evidence, backup]
