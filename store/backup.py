"""Consistent copies of the live database, taken while the service writes to it."""

from __future__ import annotations

import os
import sqlite3

from integrations.files import OutputError, private_output_path
from store.audit import ChainHead, chain_head
from store.db import Store


class BackupError(Exception):
    "The backup could not be written"


def backup_database(db: Store, target: str, *, force: bool = False) -> ChainHead:
    """Copy the database to `target` (owner-only, never through a symlink); returns the copy's chain head.

    An existing `target` is refused unless `force`, then replaced atomically. SQLite's online
    backup in a single step reads one snapshot: in WAL mode writers carry on meanwhile, and
    nothing they commit during the copy is half in it (a stepwise backup would restart on
    every write and might never finish under load).
    """
    source_path = os.path.abspath(db.path)
    if os.path.exists(target) and os.path.samefile(source_path, target):
        raise BackupError("the backup file cannot be the live database itself")
    try:
        with private_output_path(target, force=force, prefix=".backup-") as temporary:
            copy = sqlite3.connect(temporary)
            try:
                db.conn.backup(copy)
                # A single self-contained file (no -wal beside it), readable from read-only media.
                copy.execute("PRAGMA journal_mode=DELETE")
                head = chain_head(copy)
            finally:
                copy.close()
    except OutputError as e:
        raise BackupError(str(e)) from None
    except (sqlite3.Error, OSError) as e:
        raise BackupError(f"backup to {target} failed: {e}") from e
    return head
