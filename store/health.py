"""Can the database take a durable write right now? The probe behind /healthz (issue 7).

It commits a real write that needs a fresh page, through the shared write path, and leaves
nothing behind: a SELECT would answer even when every write fails."""

from __future__ import annotations

from store.db import Store, durable_write

PROBE_KEY = "healthz_write_probe"


def write_probe(db: Store) -> None:
    """Commit a page-sized write and undo it; raises DatabaseUnavailable when writes fail."""
    page_size = db.page_size()
    with durable_write(db) as conn:
        # A value larger than a page: SQLite must allocate a page, as a new delivery may.
        conn.execute(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (PROBE_KEY, "0" * page_size),
        )
        conn.execute("DELETE FROM state WHERE key = ?", (PROBE_KEY,))
