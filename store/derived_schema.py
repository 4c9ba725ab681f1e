"""Schema of the derived attendance tables (issue 8): registered only through store/registry.py.

Kept apart from store/derived.py, which the web app, the poller and the CLI import early:
importing those never changes the order in which migrations apply (as store/audit_schema.py).
"""

from __future__ import annotations

import sqlite_utils

from store.schema import migrations


@migrations()
def m008_derived_attendance(db: sqlite_utils.Database) -> None:
    """Derived attendance tables and views (issue 8)."""
    # One statement at a time: executescript would commit the migration's transaction.
    for statement in _SCHEMA.split(";\n"):
        if statement.strip():
            db.execute(statement)


_SCHEMA = """
CREATE TABLE attendance_instances (
    instance_uuid TEXT PRIMARY KEY REFERENCES instances (instance_uuid),
    meeting_id TEXT,
    kind TEXT,
    topic TEXT,
    start_time TEXT,
    end_time TEXT,
    window_seconds INTEGER,
    ended INTEGER NOT NULL,
    report_complete INTEGER NOT NULL,
    webhook_events INTEGER NOT NULL,
    report_rows INTEGER NOT NULL,
    registered INTEGER,
    people INTEGER NOT NULL,
    in_meeting INTEGER NOT NULL,
    total_attended_seconds INTEGER NOT NULL,
    peak_concurrent INTEGER NOT NULL,
    peak_at TEXT,
    evidence TEXT
);
CREATE INDEX attendance_instances_meeting ON attendance_instances (meeting_id, start_time);
CREATE TABLE people (
    instance_uuid TEXT NOT NULL REFERENCES attendance_instances (instance_uuid) ON DELETE CASCADE,
    person_key TEXT NOT NULL,
    identity TEXT NOT NULL CHECK (identity IN ('registrant', 'email', 'user', 'name')),
    name TEXT,
    email TEXT,
    registrant_id TEXT,
    participant_user_id TEXT,
    names TEXT NOT NULL,
    emails TEXT NOT NULL,
    registrant_ids TEXT NOT NULL,
    participant_user_ids TEXT NOT NULL,
    connection_ids TEXT NOT NULL,
    PRIMARY KEY (instance_uuid, person_key)
);
CREATE INDEX people_email ON people (email);
CREATE INDEX people_registrant ON people (registrant_id);
CREATE TABLE attendance (
    instance_uuid TEXT NOT NULL,
    person_key TEXT NOT NULL,
    attended_seconds INTEGER NOT NULL,
    open_since TEXT,
    segments INTEGER NOT NULL,
    first_join TEXT,
    last_leave TEXT,
    in_meeting INTEGER NOT NULL,
    sources TEXT NOT NULL,
    seconds_from TEXT NOT NULL CHECK (seconds_from IN ('webhook', 'report')),
    webhook_only INTEGER NOT NULL,
    webhook_seconds INTEGER,
    report_seconds INTEGER,
    registrant_id TEXT,
    registrant_matched INTEGER NOT NULL,
    registrant_match TEXT,
    PRIMARY KEY (instance_uuid, person_key),
    FOREIGN KEY (instance_uuid, person_key) REFERENCES people (instance_uuid, person_key) ON DELETE CASCADE
);
CREATE INDEX attendance_seconds ON attendance (instance_uuid, attended_seconds);
CREATE INDEX attendance_registrant ON attendance (registrant_id);
CREATE TABLE attendance_sessions (
    instance_uuid TEXT NOT NULL,
    person_key TEXT NOT NULL,
    start_time TEXT NOT NULL,
    end_time TEXT,
    seconds INTEGER,
    open INTEGER NOT NULL,
    sources TEXT NOT NULL,
    PRIMARY KEY (instance_uuid, person_key, start_time),
    FOREIGN KEY (instance_uuid, person_key) REFERENCES people (instance_uuid, person_key) ON DELETE CASCADE
);
CREATE INDEX participant_events_instance_raw ON participant_events (instance_uuid, raw_id);
CREATE VIEW attendees AS
SELECT ai.meeting_id, a.instance_uuid, a.person_key, p.identity, p.name, p.email, a.registrant_id,
    a.attended_seconds + CASE WHEN a.open_since IS NULL THEN 0 ELSE
        max(0, CAST(strftime('%s', 'now') AS INTEGER) - CAST(strftime('%s', a.open_since) AS INTEGER)) END
        AS attended_seconds,
    a.segments, a.first_join, a.last_leave, a.in_meeting, a.sources, a.webhook_only,
    a.seconds_from, a.webhook_seconds, a.report_seconds, a.registrant_matched
FROM attendance a
JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key
JOIN attendance_instances ai ON ai.instance_uuid = a.instance_uuid;
CREATE VIEW registrant_attendance AS
SELECT r.meeting_id, ai.instance_uuid, r.registrant_id, r.email, r.name, r.status,
    a.person_key, coalesce(a.attended_seconds, 0) AS attended_seconds, a.first_join, a.last_leave,
    a.person_key IS NOT NULL AS attended
FROM registrants r
JOIN attendance_instances ai ON ai.meeting_id = r.meeting_id
LEFT JOIN attendance a ON a.instance_uuid = ai.instance_uuid AND a.registrant_id = r.registrant_id
    AND a.registrant_matched = 1
"""


@migrations()
def m009_derived_dirty(db: sqlite_utils.Database) -> None:
    """Instances whose derived rows wait for a refresh, marked by triggers on the evidence."""
    # Plain INSERT ... WHERE NOT EXISTS: an OR IGNORE inside a trigger gives way to the
    # conflict policy of the statement that fired it. Whoever normalizes a delivery (worker, CLI, API) or stores a report or a registrant,
    # the worker learns which instances changed from this table and refreshes them.
    for statement in _DIRTY.split(";\n\n"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT OR IGNORE INTO derived_dirty (instance_uuid) SELECT instance_uuid FROM instances")


_DIRTY = """
CREATE TABLE derived_dirty (
    instance_uuid TEXT PRIMARY KEY
);

CREATE TRIGGER derived_dirty_delivery AFTER UPDATE OF meeting_uuid ON raw_records
WHEN NEW.meeting_uuid IS NOT NULL
BEGIN
    INSERT INTO derived_dirty (instance_uuid) SELECT NEW.meeting_uuid
        WHERE NOT EXISTS (SELECT 1 FROM derived_dirty WHERE instance_uuid = NEW.meeting_uuid);
END;

CREATE TRIGGER derived_dirty_instance_added AFTER INSERT ON instances
BEGIN
    INSERT INTO derived_dirty (instance_uuid) SELECT NEW.instance_uuid
        WHERE NOT EXISTS (SELECT 1 FROM derived_dirty WHERE instance_uuid = NEW.instance_uuid);
END;

CREATE TRIGGER derived_dirty_instance_changed AFTER UPDATE ON instances
BEGIN
    INSERT INTO derived_dirty (instance_uuid) SELECT NEW.instance_uuid
        WHERE NOT EXISTS (SELECT 1 FROM derived_dirty WHERE instance_uuid = NEW.instance_uuid);
END;

CREATE TRIGGER derived_dirty_registrant_added AFTER INSERT ON registrants
BEGIN
    INSERT INTO derived_dirty (instance_uuid)
        SELECT instance_uuid FROM instances WHERE meeting_id = NEW.meeting_id
        AND instance_uuid NOT IN (SELECT instance_uuid FROM derived_dirty);
END;

CREATE TRIGGER derived_dirty_registrant_changed AFTER UPDATE ON registrants
BEGIN
    INSERT INTO derived_dirty (instance_uuid)
        SELECT instance_uuid FROM instances WHERE meeting_id = NEW.meeting_id
        AND instance_uuid NOT IN (SELECT instance_uuid FROM derived_dirty);
END
"""


@migrations()
def m010_derived_refreshes(db: sqlite_utils.Database) -> None:
    """When each instance's derived rows were last computed, and how long that took."""
    # Apart from attendance_instances: a rebuild must give identical rows there.
    db.execute(
        "CREATE TABLE derived_refreshes (instance_uuid TEXT PRIMARY KEY, refreshed_at TEXT NOT NULL, seconds REAL)"
    )
