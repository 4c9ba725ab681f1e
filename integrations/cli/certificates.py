"""CLI commands: certificates (keygen, issue, pdf, list, revoke, reissue, send, verify) (issue 17)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from integrations.certificates import issue as issuing
from integrations.certificates.eligibility import STAGES, NotEligibleYet, eligible_people
from integrations.certificates.extract import NotACertificate, code_from_argument
from integrations.certificates.keys import KeyFileError, read_key, write_new_key
from integrations.certificates.mail import MailConfigError, Mailer, RateLimit, SmtpUnavailable, send_certificates
from integrations.certificates.output import OutputError, prepare_directory, render_certificates
from integrations.certificates.render import RenderError, misprinted, page_of, renderer_for, verify_url
from integrations.certificates.signing import InvalidCode, key_id, load_public_key, public_key_pem
from integrations.certificates.template import Template, TemplateError, load_template
from integrations.cli.context import FINITE_MINUTES, PERCENT, App, pass_app, user_errors
from integrations.reads.attendance import current_instance, now_seconds
from integrations.reads.formats import csv_lines, table_lines
from store import certificates as store
from store.attendance_queries import meeting_number, resolve_instance
from store.certificates import CertificateNotFound, CertificateRevoked
from store.db import database_exists

LIST_FIELDS = ("number", "name", "email", "code", "verify_url", "issued", "revoked", "sent")
TABLE_FIELDS = ("number", "name", "email", "issued", "revoked", "sent")


@contextmanager
def certificate_errors() -> Iterator[None]:
    """The certificate errors a user can act on, as one line and exit 1."""
    with user_errors():
        try:
            yield
        except (
            KeyFileError,
            MailConfigError,
            SmtpUnavailable,
            TemplateError,
            RenderError,
            OutputError,
            NotEligibleYet,
            CertificateNotFound,
            CertificateRevoked,
        ) as e:
            raise click.ClickException(str(e)) from None


def meeting_id_of(db, meeting: str) -> str:
    """The meeting id certificates are kept under: MEETING itself when numeric, else its instance's."""
    number = meeting_number(meeting)
    if number is not None:
        return number
    uuid = resolve_instance(db, meeting)
    return db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [uuid]).fetchone()[0]


def describe_rules(rules: dict[str, Any]) -> str:
    """The rules a run applied, in one line: stage, minimum, pass percent, version, overrides."""
    parts = [f"stage {rules['stage']}"]
    if rules.get("min_minutes") is not None:
        parts.append(f"at least {rules['min_minutes']:g} minutes")
    elif rules.get("min_percent") is not None:
        parts.append(f"at least {rules['min_percent']:g}% of the instance")
    else:
        parts.append("no minimum (everyone who joined)")
    if rules.get("pass_percent") is not None:
        parts.append(f"pass {rules['pass_percent']:g}%")
    parts.append(f"stored rules version {rules['version']}" if rules.get("version") else "no stored rules")
    if rules.get("overridden"):
        parts.append(f"overridden for this run: {', '.join(rules['overridden'])}")
    return "; ".join(parts)


def _template(app: App) -> Template:
    return load_template(app.config.cert_template_file)


@click.group()
def certificates() -> None:
    """E-certificates: issue, render, email, verify and revoke (docs/certificates.md)."""


@certificates.command()
@click.option("--key-file", metavar="PATH", help="Where to write the key (default: CERT_SIGNING_KEY_FILE)")
@pass_app
def keygen(app: App, key_file: str | None) -> None:
    """Make a new Ed25519 signing key (mode 0600; refuses to overwrite) and print its public key."""
    path = key_file or app.config.cert_signing_key_file
    if not path:
        raise click.UsageError("give --key-file or set CERT_SIGNING_KEY_FILE")
    with certificate_errors():
        key = write_new_key(path)
    click.echo(public_key_pem(key).decode(), nl=False)
    click.echo(f"wrote {path} (key id {key_id(key)}); keep a copy somewhere safe", err=True)


@certificates.command()
@click.argument("meeting")
@click.option("--stage", type=click.Choice(STAGES), default="attended", show_default=True)
@click.option("--instance", metavar="UUID", help="A past instance of a recurring meeting (default: the latest)")
@click.option("--min-minutes", type=FINITE_MINUTES, help="Override the stored minimum: at least this many minutes")
@click.option("--min-percent", type=PERCENT, help="Override the stored minimum: at least this share of the instance")
@click.option("--pass-percent", type=PERCENT, help="Override the stored pass percent of the quiz (stage passed)")
@click.option("--event", metavar="TEXT", help="Event name printed (default: the template's, else the Zoom topic)")
@pass_app
def issue(
    app: App,
    meeting: str,
    stage: str,
    instance: str | None,
    min_minutes: float | None,
    min_percent: float | None,
    pass_percent: float | None,
    event: str | None,
) -> None:
    """Issue a certificate to each person of MEETING at the funnel STAGE who has none yet (idempotent).

    The meeting's stored rules (worker.py rules) apply unless an option overrides them for this run.
    """
    db = app.store()
    overrides = {"min_minutes": min_minutes, "min_percent": min_percent, "pass_percent": pass_percent}
    with certificate_errors():
        key = read_key(app.config.cert_signing_key_file)
        uuid = current_instance(db, meeting, instance)
        found = eligible_people(db, uuid, stage, overrides=overrides, now=now_seconds())
        outcome = issuing.issue_to_eligible(db, found, key=key, event=event or _template(app).event or None)
    click.echo(
        f"issued {len(outcome.issued)} certificates for meeting {outcome.meeting_id} "
        f"(eligible {outcome.eligible}, already had one {outcome.already}, without a name {outcome.without_name}, "
        f"a phone number as name {outcome.phone_as_name})"
    )
    _warn_phone_named(outcome.phone_named)
    click.echo(f"rules: {describe_rules(outcome.rules)}", err=True)
    if outcome.issued:
        click.echo(f"numbers {outcome.issued[0]}-{outcome.issued[-1]}", err=True)


@certificates.command()
@click.argument("meeting")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Directory for the PDFs")
@click.option("--zip", "as_zip", is_flag=True, help="Write one certificates-MEETING.zip instead of one file each")
@click.option("--workers", type=click.IntRange(1, 16), default=lambda: os.cpu_count() or 1, show_default="cores")
@click.option("--include-revoked", is_flag=True, help="Also render revoked certificates")
@pass_app
def pdf(app: App, meeting: str, out_dir: str, as_zip: bool, workers: int, include_revoked: bool) -> None:
    """Render MEETING's certificates as A4 PDFs with a QR code to their verify page (files 0600)."""
    db = app.existing_store()
    with certificate_errors():
        meeting_id = meeting_id_of(db, meeting)
        rows = [r for r in store.list_certificates(db, meeting_id) if include_revoked or r["revoked_at"] is None]
        if not rows:
            raise click.ClickException(f"no certificates for meeting {meeting_id}: run `certificates issue` first")
        prepare_directory(out_dir)  # before the progress bar: a bad --out is one line, not a bar and a line
        names = render_certificates(
            rows,
            _template(app),
            app.config.public_base_url,
            out_dir,
            as_zip=f"certificates-{meeting_id}.zip" if as_zip else None,
            workers=workers,
        )
        with click.progressbar(names, length=len(rows), label="rendering", file=sys.stderr) as bar:
            for _ in bar:
                pass
        _warn_misprinted(rows)
        _warn_phone_named(issuing.phone_named_certificates(rows))
    target = os.path.join(out_dir, f"certificates-{meeting_id}.zip") if as_zip else out_dir
    click.echo(f"wrote {len(rows)} certificates to {target}")


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:20])) + (" ..." if len(numbers) > 20 else "")


def _warn_phone_named(numbers: list[int]) -> None:
    """Name the live certificates issued earlier to a phone number: they stay valid until revoked."""
    if numbers:
        click.echo(
            f"warning: {len(numbers)} live certificates print a phone number as the name (issued before "
            f"such names were skipped; their verify pages show it): certificates {_numbers(numbers)}; "
            "revoke each with `worker.py certificates revoke NUMBER --reason 'phone number as name'`",
            err=True,
        )


def _warn_misprinted(rows: list[dict[str, Any]]) -> None:
    """Say which certificates print a name not as spelled, so they can be checked before sending."""
    reasons: dict[str, list[int]] = {}
    for row in rows:
        why = misprinted(row["name"])
        if why:
            reasons.setdefault(why, []).append(row["number"])
    for why, numbers in reasons.items():
        click.echo(f"warning: {len(numbers)} names with {why}: certificates {_numbers(numbers)}", err=True)


def _list_row(row: dict[str, Any], base_url: str) -> dict[str, Any]:
    return {
        "number": row["number"],
        "name": row["name"],
        "email": row["email"],
        "code": row["code"],
        "verify_url": verify_url(base_url, row["code"]),
        "issued": row["issued_at"],
        "revoked": row["revoked_at"],
        "sent": row["sent"],
    }


def _to_the_second(stamp: str | None) -> str | None:
    """2026-01-15T10:00:00.123456Z as 2026-01-15T10:00:00Z: a table column need not carry microseconds."""
    if not stamp or len(stamp) <= 20:
        return stamp
    return stamp[:19] + "Z"


@certificates.command(name="list")
@click.argument("meeting")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@pass_app
def list_(app: App, meeting: str, fmt: str) -> None:
    """List MEETING's certificates: number, name, email, issued, revoked, sent (csv/json add code, verify URL)."""
    db = app.existing_store()
    with certificate_errors():
        rows = [
            _list_row(r, app.config.public_base_url) for r in store.list_certificates(db, meeting_id_of(db, meeting))
        ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    elif fmt == "csv":
        for line in csv_lines(rows, LIST_FIELDS):
            click.echo(line, nl=False)
    else:
        # The code and verify URL (110-160 characters each) do not fit a terminal line: csv and json carry them.
        shown = [{**r, **{f: _to_the_second(r[f]) for f in ("issued", "revoked", "sent")}} for r in rows]
        for line in table_lines(shown, TABLE_FIELDS):
            click.echo(line)
        click.echo(f"{len(rows)} certificates", err=True)


def _stripped_not_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty")
    return value.strip()


@certificates.command()
@click.argument("number", type=int)
@click.option(
    "--reason",
    required=True,
    callback=_stripped_not_empty,
    help="Why (recorded in the certificate chain; shown as revoked)",
)
@pass_app
def revoke(app: App, number: int, reason: str) -> None:
    """Revoke certificate NUMBER: its verify page and API then say revoked."""
    db = app.existing_store()
    with certificate_errors():
        row = store.revoke_certificate(db, number, reason)
    click.echo(f"revoked certificate {number} ({row['name']}) at {row['revoked_at']}")


@certificates.command()
@click.argument("number", type=int)
@click.option("--name", required=True, help="The corrected name to print")
@pass_app
def reissue(app: App, number: int, name: str) -> None:
    """Revoke certificate NUMBER and issue a replacement with a corrected name (both recorded)."""
    db = app.existing_store()
    with certificate_errors():
        key = read_key(app.config.cert_signing_key_file)
        try:
            row = issuing.reissue(db, number, name, key=key)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    click.echo(f"revoked certificate {number}; issued {row['number']} to {row['name']}")
    click.echo(verify_url(app.config.public_base_url, row["code"]))


@certificates.command()
@click.argument("meeting")
@click.option("--resend-in-doubt", is_flag=True, help="Also send those a crash left in doubt (check the server log)")
@pass_app
def send(app: App, meeting: str, resend_in_doubt: bool) -> None:
    """Email each live certificate of MEETING as a PDF, once; resumable after a crash."""
    config = app.config
    with certificate_errors():
        mailer = Mailer(config)
        db = app.existing_store()
        meeting_id = meeting_id_of(db, meeting)
        template = _template(app)
        renderer = renderer_for(store.list_certificates(db, meeting_id), template)

        def progress(row: dict[str, Any], status: str) -> None:
            click.echo(f"{row['number']} {status}", err=True)

        report = send_certificates(
            db,
            meeting_id,
            mailer=mailer,
            render_pdf=lambda row: renderer.render(page_of(row, template, config.public_base_url)),
            verify_url=lambda row: verify_url(config.public_base_url, row["code"]),
            rate=RateLimit(config.cert_send_per_minute),
            resend_in_doubt=resend_in_doubt,
            progress=progress,
        )
    click.echo(f"sent {report.sent}, refused {report.refused}, failed {report.failed} (retried next run)")
    if report.in_doubt or report.skipped_in_doubt:
        click.echo(
            f"in doubt (not resent): {report.skipped_in_doubt} certificates a crash interrupted mid-send; "
            "check the SMTP server's log for their Message-ID, then `send --resend-in-doubt` if needed",
            err=True,
        )


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _read_pdf(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise click.ClickException(f"cannot read {path}: {e.strerror}") from None


@certificates.command()
@click.argument("certificate")
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False),
    help="PEM public key (default: from CERT_SIGNING_KEY_FILE)",
)
@click.option(
    "--offline", is_flag=True, help="Check the signature only; do not look the certificate up in the database"
)
@pass_app
def verify(app: App, certificate: str, public_key_file: str | None, offline: bool) -> None:
    """Check a certificate CODE, verify URL or PDF against the public key; exit 1 when invalid or revoked."""
    with certificate_errors():
        try:
            code = code_from_argument(certificate, _read_bytes)
        except NotACertificate as e:
            raise click.ClickException(str(e)) from None
        except InvalidCode as e:
            raise click.ClickException(f"INVALID: {e}") from None
        if public_key_file:
            try:
                public_key = load_public_key(_read_pdf(public_key_file))
            except ValueError as e:
                raise click.ClickException(f"{public_key_file}: {e}") from None
        elif app.config.cert_signing_key_file:
            public_key = read_key(app.config.cert_signing_key_file).public_key()
        else:
            # A new key would verify nothing issued before: the issuer's public key is what is needed.
            raise click.ClickException(
                "no key to check against: give --public-key FILE (the issuer publishes it at "
                "PUBLIC_BASE_URL/verify/key), or set CERT_SIGNING_KEY_FILE to the signing key"
            )
        try:
            db = None if offline or not database_exists(app.database_path()) else app.readonly_store()
            verdict = issuing.check_code(db, code, public_key)
        except InvalidCode as e:
            raise click.ClickException(f"INVALID: {e}") from None
    shown = verdict.public()
    click.echo(json.dumps(shown, ensure_ascii=False))
    if verdict.revoked:
        raise click.ClickException(f"REVOKED at {shown['revoked_at']}")
    if verdict.row is None:
        click.echo("signature valid; revocation not checked (no database)", err=True)


commands: list[click.Command] = [certificates]
