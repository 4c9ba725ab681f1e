"""Report evidence from Zoom's REST API: fetched pages, report rows, registrants.

Pages are raw records in the hash chain (store/evidence.py). Report rows are one per row
of Zoom's participant report; the rows of an instance are those of its last complete
fetch (`instances.report_fetch_id`), so a partial fetch never replaces a complete one.
"""

from __future__ import annotations

import sqlite_utils

from store.schema import migrations


@migrations()
def m002_reports(db: sqlite_utils.Database) -> None:
    """Report fetches, report rows, registrants; report status on instances."""
    db.executescript(
        """
        CREATE TABLE report_fetches (
            id INTEGER PRIMARY KEY,
            instance_uuid TEXT NOT NULL,
            kind TEXT,
            started_at TEXT NOT NULL,
            completed_at TEXT,
            status TEXT NOT NULL DEFAULT 'running',  -- running | complete | failed
            error TEXT,
            pages INTEGER NOT NULL DEFAULT 0,
            rows INTEGER NOT NULL DEFAULT 0,
            api_calls INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX report_fetches_instance ON report_fetches (instance_uuid);

        CREATE TABLE report_rows (
            id INTEGER PRIMARY KEY,
            instance_uuid TEXT NOT NULL,
            row_hash TEXT NOT NULL,        -- SHA-256 of the row's canonical JSON: re-fetches dedupe on it
            raw_id INTEGER REFERENCES raw_records (id),  -- the page it came from
            fetch_id INTEGER REFERENCES report_fetches (id),  -- last fetch that saw it
            user_id TEXT,
            participant_user_id TEXT,
            registrant_id TEXT,
            name TEXT,
            user_email TEXT,
            join_time TEXT,
            leave_time TEXT,
            duration INTEGER,
            status TEXT,
            bo_mtg_id TEXT,
            customer_key TEXT,
            failover INTEGER,
            UNIQUE (instance_uuid, row_hash)
        );
        CREATE INDEX report_rows_fetch ON report_rows (instance_uuid, fetch_id);
        CREATE INDEX report_rows_email ON report_rows (user_email);
        CREATE INDEX report_rows_registrant ON report_rows (registrant_id);

        CREATE TABLE registrants (
            meeting_id TEXT NOT NULL,
            registrant_id TEXT NOT NULL,
            email TEXT,
            first_name TEXT,
            last_name TEXT,
            name TEXT,
            status TEXT,
            create_time TEXT,
            raw_id INTEGER REFERENCES raw_records (id),
            fetched_at TEXT,
            PRIMARY KEY (meeting_id, registrant_id)
        );
        CREATE INDEX registrants_email ON registrants (email);

        ALTER TABLE instances ADD COLUMN report_fetch_id INTEGER REFERENCES report_fetches (id);
        ALTER TABLE instances ADD COLUMN report_complete INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE instances ADD COLUMN report_fetched_at TEXT;
        """
    )
