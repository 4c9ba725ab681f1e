"""Consistent copies of the live database, taken while the service writes to it."""

from __future__ import annotations

import os
import sqlite3

from store.audit import ChainHead, chain_head
from store.db import Store


class BackupError(Exception):
    "The backup could not be written"


def backup_database(db: Store, target: str) -> ChainHead:
    """Copy the database into the file `target` (a new, owner-only temporary file the caller
    publishes: integrations/files.py); returns the copy's chain head.

    SQLite's online backup in a single step reads one snapshot: in WAL mode writers carry on
    meanwhile, and nothing they commit during the copy is half in it (a stepwise backup
    would restart on every write and might never finish under load).
    """
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


def check_backup_target(db: Store, target: str) -> None:
    """BackupError if `target` is the live database itself."""
    if os.path.exists(target) and os.path.samefile(os.path.abspath(db.path), target):
        raise BackupError("the backup file cannot be the live database itself")
