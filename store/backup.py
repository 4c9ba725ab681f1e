"""Consistent copies of the live database, taken while the service writes to it."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess

from store.audit import ChainHead, chain_head
from store.db import Store
from store.postgres import PostgresStore, redact, redact_text, without_password


class BackupError(Exception):
    "The backup could not be written"


def backup_database(db: Store, target: str) -> ChainHead:
    """Copy the database into the file `target` (a new, owner-only temporary file the caller
    publishes: integrations/files.py); returns the copy's chain head.

    SQLite's online backup in a single step reads one snapshot: in WAL mode writers carry on
    meanwhile, and nothing they commit during the copy is half in it (a stepwise backup
    would restart on every write and might never finish under load).
    """
    if isinstance(db, PostgresStore):
        return _pg_dump(db, target)
    try:
        copy = sqlite3.connect(target)
        try:
            db.conn.backup(copy)
            # A single self-contained file (no -wal beside it), readable from read-only media.
            copy.execute("PRAGMA journal_mode=DELETE")
            return chain_head(copy)
        finally:
            copy.close()
    except sqlite3.Error as e:
        raise BackupError(f"backup failed: {e}") from e


def _pg_dump(db: PostgresStore, target: str) -> ChainHead:
    """`pg_dump --format=custom` of one snapshot, whose chain head is read in that snapshot.

    Restore with `pg_restore --dbname URL FILE` into an empty database (docs/scaling.md).
    """
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump not found: install PostgreSQL's client programs (Debian: postgresql-client)")
    with db.read_snapshot() as conn:
        # The dump reads exactly the snapshot this transaction holds open meanwhile.
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        head = chain_head(conn)
        # The password goes through the environment: a command line is visible to every user (ps).
        conninfo, password = without_password(db.path)
        env = dict(os.environ) if password is None else {**os.environ, "PGPASSWORD": password}
        result = subprocess.run(
            [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={target}", f"--dbname={conninfo}"],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
    if result.returncode != 0:
        message = result.stderr.strip().splitlines()[0] if result.stderr.strip() else f"exit {result.returncode}"
        raise BackupError(f"pg_dump of {redact(db.path)} failed: {redact_text(message)}")
    return head


def check_command(db: Store, target: str, head: ChainHead, worker: str) -> str:
    """The command(s) that check the backup `target` of `db` against `head` (printed by `backup`)."""
    quoted = shlex.quote(target)
    if isinstance(db, PostgresStore):
        # A dump is checked in a database restored from it (an empty one, made for the check).
        return (
            f"pg_restore --no-owner --dbname=EMPTY_DATABASE_URL {quoted} && "
            f"{worker} verify --database EMPTY_DATABASE_URL --head {head.chain_hash}"
        )
    return f"{worker} verify --database {quoted} --head {head.chain_hash}"


def check_backup_target(db: Store, target: str) -> None:
    """BackupError if `target` is the live database itself (a PostgreSQL database is no file)."""
    if isinstance(db, PostgresStore):
        return
    if os.path.exists(target) and os.path.samefile(os.path.abspath(db.path), target):
        raise BackupError("the backup file cannot be the live database itself")
