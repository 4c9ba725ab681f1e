"""Consistent copies of the live database, taken while the service writes to it."""

from __future__ import annotations

import os
import sqlite3
import tempfile

from store.audit import ChainHead, chain_head
from store.db import Store


class BackupError(Exception):
    "The backup could not be written"


def _fsync_path(path: str, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup_database(db: Store, target: str) -> ChainHead:
    """Copy the database to `target` (owner-only, replaced atomically); returns the copy's chain head.

    SQLite's online backup in a single step reads one snapshot: in WAL mode writers carry on
    meanwhile, and nothing they commit during the copy is half in it (a stepwise backup
    would restart on every write and might never finish under load).
    """
    source_path = os.path.abspath(db.path)
    target = os.path.abspath(target)
    if os.path.isdir(target):
        raise BackupError(f"{target} is a directory: name the backup file")
    if os.path.exists(target) and os.path.samefile(source_path, target):
        raise BackupError("the backup file cannot be the live database itself")
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise BackupError(f"directory {directory} does not exist")
    # mkstemp creates the file 0600: the copy holds the same personal data as the database.
    fd, temporary = tempfile.mkstemp(prefix=".backup-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        copy = sqlite3.connect(temporary)
        try:
            db.conn.backup(copy)
            # A single self-contained file (no -wal beside it), readable from read-only media.
            copy.execute("PRAGMA journal_mode=DELETE")
            head = chain_head(copy)
        finally:
            copy.close()
        os.chmod(temporary, 0o600)
        _fsync_path(temporary)
        os.replace(temporary, target)
        _fsync_path(directory)
    except (sqlite3.Error, OSError) as e:
        raise BackupError(f"backup to {target} failed: {e}") from e
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return head
