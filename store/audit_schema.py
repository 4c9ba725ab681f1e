"""The audit trail's schema (issue 5): registered only through store/registry.py.

Kept apart from the modules that use it, so importing those early never changes the
order in which migrations apply.
"""

from __future__ import annotations

import sqlite_utils

from store.schema import migrations


@migrations()
def m005_raw_records_meeting_id_index(db: sqlite_utils.Database) -> None:
    """Index raw_records.meeting_id: the raw log of a meeting number is looked up by it (store/rawlog.py)."""
    db.execute("CREATE INDEX IF NOT EXISTS raw_records_meeting_id ON raw_records (meeting_id)")
