"""The spool's bookkeeping table (issue 6): registered only through store/registry.py."""

from __future__ import annotations

import sqlite_utils

from store.schema import migrations


@migrations()
def m011_spool_files(db: sqlite_utils.Database) -> None:
    """How far each spool file is imported into raw_records (store/spool.py)."""
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS spool_files (
            name TEXT PRIMARY KEY,
            imported_bytes INTEGER NOT NULL,
            imported_records INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL
        )
        """
    )
