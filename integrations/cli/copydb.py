"""CLI command copy-db: move the whole database between SQLite and PostgreSQL (issue 19).

The copy itself is store/copy.py; this module opens both ends from their URLs, migrates the
target, prints progress per table and checks the target's chain against the source's head."""

from __future__ import annotations

import sqlite3

import click
import psycopg

from integrations.cli.context import user_errors
from integrations.config import ConfigError, database_path_from_url
from store.audit import ChainError, open_readonly, verify_chain
from store.certificates import CertificateChainError, verify_certificate_chain
from store.copy import CopyError, SourceHead, copy_database
from store.db import Store, check_database_file, open_db, removed_on_failure
from store.migrations import migrate
from store.postgres import first_line, is_postgres_url, redact


def _location(url: str, name: str) -> str:
    """The store location (SQLite path or PostgreSQL URL) a URL argument names."""
    try:
        return database_path_from_url(url)
    except ConfigError as e:
        raise click.BadParameter(str(e).replace("DATABASE_URL", name), param_hint=name) from None


def _open_source(location: str) -> Store:
    """The source, read-only: copy-db never writes to it."""
    if not is_postgres_url(location):
        check_database_file(location, must_exist=True, writable=False)
    db = open_readonly(location)
    try:
        db.execute("SELECT 1 FROM raw_records LIMIT 1")
    except (sqlite3.Error, psycopg.Error) as e:
        db.close()
        raise click.ClickException(
            f"cannot read {redact(location)} as an attendance-worker database: {first_line(e)}"
        ) from None
    return db


def _check_target(target: Store, head: SourceHead) -> str:
    """Verify the target's whole chain; the line to print, or a one-line error."""
    try:
        found = verify_chain(target)
        verify_certificate_chain(target)
    except (ChainError, CertificateChainError) as e:
        raise click.ClickException(f"the copy does not verify: {e}") from None
    if (found.count, found.record_id, found.chain_hash if found.record_id else None) != (
        head.count,
        head.record_id,
        head.chain_hash,
    ):
        raise click.ClickException(
            f"the copy ends at record {found.record_id} ({found.chain_hash}), the source at {head.record_id} ({head.chain_hash})"
        )
    if head.record_id is None:
        return "chain head: no raw records"
    return (
        f"chain head: {head.count} records, head {head.chain_hash} (record {head.record_id}); verify OK on the target"
    )


@click.command(name="copy-db")
@click.argument("source_url", metavar="SOURCE_URL")
@click.argument("target_url", metavar="TARGET_URL")
@click.option("--batch-rows", type=click.IntRange(min=1, max=100_000), default=2000, show_default=True)
def copy_db(source_url: str, target_url: str, batch_rows: int) -> None:
    """Copy every table from SOURCE_URL to TARGET_URL (sqlite:///path or postgresql://...).

    The target must be empty or freshly migrated (no raw records); it is migrated first and
    filled in one transaction. The source is only read, in one snapshot.
    """
    source_location, target_location = _location(source_url, "SOURCE_URL"), _location(target_url, "TARGET_URL")
    if source_location == target_location:
        raise click.BadParameter("SOURCE_URL and TARGET_URL are the same database", param_hint="TARGET_URL")
    with user_errors():
        source = _open_source(source_location)
        try:
            # A refused or failed copy leaves no new SQLite file behind, migrated but empty.
            with removed_on_failure(target_location):
                target = open_db(target_location, lock_timeout=10.0)
                try:
                    migrate(target)

                    def progress(table: str, copied: int, total: int) -> None:
                        if copied == total:
                            click.echo(f"{table}: {copied} rows")

                    try:
                        head = copy_database(source, target, batch_rows=batch_rows, progress=progress)
                    except CopyError as e:
                        raise click.ClickException(str(e)) from None
                    click.echo(_check_target(target, head))
                finally:
                    target.close()
        finally:
            source.close()


commands: list[click.Command] = [copy_db]
