"""The schema, as sqlite-utils migrations applied at start.

Each area of the service registers its migrations on `migrations` in its own module; the
order of registration is the order of application, so new migrations go at the end of
the module that owns the tables. `migrate` applies what is pending under the write lock,
so several gunicorn workers starting at once apply each migration exactly once.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from store.db import write_lock

migrations = Migrations("attendance-worker")


@migrations()
def m001_evidence_and_events(db: sqlite_utils.Database) -> None:
    """Raw evidence (one hash chain), normalized participant events, instances, meetings."""
    db.executescript(
        """
        CREATE TABLE raw_records (
            id INTEGER PRIMARY KEY,
            source TEXT NOT NULL CHECK (source IN ('webhook', 'report')),
            received_at TEXT NOT NULL,
            body BLOB NOT NULL,
            sha256 TEXT NOT NULL,
            chain_hash TEXT NOT NULL,
            -- webhook deliveries
            zm_request_timestamp TEXT,
            zm_signature TEXT,
            zm_request_id TEXT,
            zm_trackingid TEXT,
            stale_timestamp INTEGER NOT NULL DEFAULT 0,
            -- filled by normalization (not covered by the chain: derived, not evidence)
            event TEXT,
            meeting_id TEXT,
            meeting_uuid TEXT,
            parse_error TEXT,
            -- report pages
            url TEXT,
            UNIQUE (source, sha256)
        );
        CREATE INDEX raw_records_meeting_uuid ON raw_records (meeting_uuid);
        CREATE INDEX raw_records_received_at ON raw_records (received_at);

        CREATE TABLE participant_events (
            id INTEGER PRIMARY KEY,
            raw_id INTEGER NOT NULL REFERENCES raw_records (id),
            item INTEGER NOT NULL DEFAULT 0,
            event TEXT NOT NULL,
            kind TEXT,
            meeting_id TEXT,
            instance_uuid TEXT,
            topic TEXT,
            user_id TEXT,
            participant_uuid TEXT,
            participant_user_id TEXT,
            registrant_id TEXT,
            email TEXT,
            user_name TEXT,
            phone_number TEXT,
            customer_key TEXT,
            join_time TEXT,
            leave_time TEXT,
            date_time TEXT,
            leave_reason TEXT,
            event_ts INTEGER,
            UNIQUE (raw_id, item)
        );
        CREATE INDEX participant_events_instance ON participant_events (instance_uuid, event);
        CREATE INDEX participant_events_email ON participant_events (email);
        CREATE INDEX participant_events_registrant ON participant_events (registrant_id);

        CREATE TABLE instances (
            instance_uuid TEXT PRIMARY KEY,
            meeting_id TEXT,
            kind TEXT,
            topic TEXT,
            host_id TEXT,
            start_time TEXT,
            end_time TEXT,
            started_event_ts INTEGER,
            ended_event_ts INTEGER,
            topic_event_ts INTEGER,
            first_seen_at TEXT
        );
        CREATE INDEX instances_meeting_id ON instances (meeting_id);

        CREATE TABLE tracked_meetings (
            meeting_id TEXT PRIMARY KEY,
            kind TEXT,
            topic TEXT,
            source TEXT NOT NULL,
            added_at TEXT NOT NULL
        );

        CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value TEXT
        );
        """
    )


def ordered_migrations() -> list:
    """Every registered migration, in the order of their m0NN names."""
    # Importing the modules that own tables registers their migrations.
    import store.registry  # noqa: F401

    # Registration follows import order, which an early import elsewhere can change; the
    # m0NN prefixes are the order we mean, so sort by them.
    migrations._migrations.sort(key=lambda m: m.name)
    return list(migrations._migrations)


def migrate(db: sqlite_utils.Database) -> None:
    """Apply pending migrations once, even when several processes start together."""
    ordered_migrations()
    if not migrations.pending(db):
        return
    with write_lock(db.path).hold(timeout=60):  # type: ignore[attr-defined]
        migrations.apply(db)
