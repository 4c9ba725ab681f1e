"""The database schema: every migration, in order, applied at start.

Add a migration at the end with the next m0NN number; never edit one that has shipped.
`migrate` applies what is pending under the write lock, so several processes starting at
once apply each migration exactly once.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

import store.postgres_schema as postgres_schema
from store.db import Store
from store.postgres import PostgresStore

# The set's name is stored in every existing database's _sqlite_migrations: never rename it.
migrations = Migrations("attendance-worker")


def _execute_each(db: sqlite_utils.Database, script: str, separator: str = ";\n") -> None:
    """Run a script's statements one at a time: executescript would commit the migration's transaction."""
    for statement in script.split(separator):
        if statement.strip():
            db.execute(statement)


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


@migrations()
def m003_report_schedule(db: sqlite_utils.Database) -> None:
    """Fetch bookkeeping, rows seen by a running fetch, the re-fetch schedule, discovery."""
    db.executescript(
        """
        ALTER TABLE report_fetches ADD COLUMN meeting_id TEXT;
        ALTER TABLE report_fetches ADD COLUMN new_rows INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE report_fetches ADD COLUMN zero_duration_rows INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE report_fetches ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;

        -- Rows a running fetch has seen. They get the fetch's id only when it completes, in
        -- the same transaction that points the instance at it: a failed or partial fetch
        -- never changes which rows are the instance's report.
        CREATE TABLE report_fetch_seen (
            fetch_id INTEGER NOT NULL REFERENCES report_fetches (id),
            row_id INTEGER NOT NULL REFERENCES report_rows (id),
            PRIMARY KEY (fetch_id, row_id)
        ) WITHOUT ROWID;

        -- One row per ended instance: when its report is (re)fetched next (issue 3).
        CREATE TABLE report_schedule (
            instance_uuid TEXT PRIMARY KEY,
            meeting_id TEXT,
            kind TEXT,
            ended_at TEXT NOT NULL,            -- end of the instance, or when we learned it had ended
            stage INTEGER NOT NULL DEFAULT 0,  -- index into REPORT_FETCH_DELAYS of the next fetch
            due_at TEXT,                       -- NULL once nothing more is planned
            status TEXT NOT NULL DEFAULT 'pending',  -- pending | done | gave_up
            attempts INTEGER NOT NULL DEFAULT 0,     -- failures since the last complete fetch
            extra_fetches INTEGER NOT NULL DEFAULT 0,  -- fetches added for unprocessed rows
            last_fetch_id INTEGER REFERENCES report_fetches (id),
            last_error TEXT,
            claimed_by TEXT,                   -- host:pid of the worker fetching it now
            claimed_until TEXT,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX report_schedule_due ON report_schedule (status, due_at);

        -- When each tracked meeting's instance list was last read from Zoom.
        CREATE TABLE report_discovery (
            meeting_id TEXT PRIMARY KEY,
            checked_at TEXT NOT NULL,
            instances INTEGER NOT NULL DEFAULT 0,
            error TEXT
        );
        """
    )


@migrations()
def m005_raw_records_meeting_id_index(db: sqlite_utils.Database) -> None:
    """Index raw_records.meeting_id: the raw log of a meeting number is looked up by it (store/rawlog.py)."""
    db.execute("CREATE INDEX IF NOT EXISTS raw_records_meeting_id ON raw_records (meeting_id)")


@migrations()
def m008_derived_attendance(db: sqlite_utils.Database) -> None:
    """Derived attendance tables and views (issue 8)."""
    _execute_each(db, _SCHEMA)


@migrations()
def m009_derived_dirty(db: sqlite_utils.Database) -> None:
    """Instances whose derived rows wait for a refresh, marked by triggers on the evidence."""
    # Plain INSERT ... WHERE NOT EXISTS: an OR IGNORE inside a trigger gives way to the
    # conflict policy of the statement that fired it. Whoever normalizes a delivery (worker, CLI, API) or stores a report or a registrant,
    # the worker learns which instances changed from this table and refreshes them.
    _execute_each(db, _DIRTY, separator=";\n\n")  # a trigger's body holds ";\n"
    db.execute("INSERT OR IGNORE INTO derived_dirty (instance_uuid) SELECT instance_uuid FROM instances")


@migrations()
def m010_derived_refreshes(db: sqlite_utils.Database) -> None:
    """When each instance's derived rows were last computed, and how long that took."""
    # Apart from attendance_instances: a rebuild must give identical rows there.
    db.execute(
        "CREATE TABLE derived_refreshes (instance_uuid TEXT PRIMARY KEY, refreshed_at TEXT NOT NULL, seconds REAL)"
    )


@migrations()
def m011_spool_files(db: sqlite_utils.Database) -> None:
    """How far each spool file is imported into raw_records (integrations/ingest/spool.py)."""
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


@migrations()
def m012_raw_records_import_source(db: sqlite_utils.Database) -> None:
    """Let raw_records hold imported files (source 'import'): registration lists (issue 16)."""
    # Widening a CHECK changes no stored row, so SQLite's documented writable_schema edit
    # (lang_altertable.html, "otherwise") applies in place, in this migration's transaction:
    # a rebuild would copy every body of a large log, and a second chained table would
    # split the one chain that `verify` checks.
    old = "CHECK (source IN ('webhook', 'report'))"
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'raw_records'").fetchone()[0]
    if old not in sql:
        raise RuntimeError("raw_records does not have the CHECK constraint m012 widens")
    version = db.execute("PRAGMA schema_version").fetchone()[0]
    db.execute("PRAGMA writable_schema = ON")
    try:
        db.execute(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = 'raw_records'",
            [sql.replace(old, "CHECK (source IN ('webhook', 'report', 'import'))")],
        )
        # A new schema version makes every open connection read the changed schema.
        db.execute(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        db.execute("PRAGMA writable_schema = OFF")


@migrations()
def m013_funnel(db: sqlite_utils.Database) -> None:
    """Polls and quizzes, outside registrations, per-meeting rules, scores and the funnel (issue 16)."""
    for statement in _FUNNEL.split(";\n"):
        if statement.strip():
            db.execute(statement)


_FUNNEL = """
CREATE TABLE polls (
    meeting_id TEXT NOT NULL,
    poll_id TEXT NOT NULL,
    title TEXT,
    poll_type INTEGER NOT NULL,      -- 1 poll, 2 advanced poll, 3 quiz
    anonymous INTEGER NOT NULL,
    status TEXT,
    raw_id INTEGER REFERENCES raw_records (id),  -- the definitions page it was read from
    PRIMARY KEY (meeting_id, poll_id)
);
CREATE TABLE poll_questions (
    meeting_id TEXT NOT NULL,
    poll_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    question TEXT NOT NULL,
    type TEXT NOT NULL,
    answers TEXT NOT NULL,           -- JSON list
    right_answers TEXT NOT NULL,     -- JSON list (quizzes)
    PRIMARY KEY (meeting_id, poll_id, number)
);
CREATE TABLE poll_answers (
    instance_uuid TEXT NOT NULL,
    raw_id INTEGER NOT NULL REFERENCES raw_records (id),  -- the poll report page
    entry INTEGER NOT NULL,          -- index of the participant in the page's `questions`
    detail INTEGER NOT NULL,         -- index in that participant's `question_details`
    name TEXT,
    email TEXT,
    anonymous INTEGER NOT NULL,
    poll_id TEXT,
    question TEXT NOT NULL,
    answer TEXT,
    date_time TEXT,
    PRIMARY KEY (instance_uuid, entry, detail)
) WITHOUT ROWID;
CREATE TABLE quiz_scores (
    instance_uuid TEXT NOT NULL,
    poll_id TEXT NOT NULL,
    person TEXT NOT NULL,            -- email:<normalized>, anonymous:<entry> or unmatched:<entry>
    email TEXT,
    name TEXT,
    anonymous INTEGER NOT NULL,
    questions INTEGER NOT NULL,
    answered INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    score_percent REAL NOT NULL,
    PRIMARY KEY (instance_uuid, poll_id, person)
) WITHOUT ROWID;
CREATE TABLE registration_imports (
    id INTEGER PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    raw_id INTEGER NOT NULL REFERENCES raw_records (id),  -- the file's bytes, in the chain
    filename TEXT,
    sha256 TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    rows INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    rejected INTEGER NOT NULL,
    UNIQUE (meeting_id, sha256)
);
CREATE TABLE outside_registrations (
    meeting_id TEXT NOT NULL,
    email_key TEXT NOT NULL,         -- trimmed, lower-cased: what matching uses
    email TEXT NOT NULL,             -- as written in the file
    name TEXT,
    extra TEXT NOT NULL,             -- JSON object of the file's other columns
    import_id INTEGER NOT NULL REFERENCES registration_imports (id),
    line INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, email_key)
) WITHOUT ROWID;
CREATE TABLE registration_rejects (
    import_id INTEGER NOT NULL REFERENCES registration_imports (id),
    line INTEGER NOT NULL,
    email TEXT,
    reason TEXT NOT NULL,
    PRIMARY KEY (import_id, line)
) WITHOUT ROWID;
CREATE TABLE meeting_rules (
    id INTEGER PRIMARY KEY,          -- a new row per change: the history is the table
    meeting_id TEXT NOT NULL,
    min_minutes REAL,
    min_percent REAL,
    pass_percent REAL,
    set_at TEXT NOT NULL
);
CREATE INDEX meeting_rules_meeting ON meeting_rules (meeting_id, id);
CREATE TABLE funnel_people (
    instance_uuid TEXT NOT NULL,
    person TEXT NOT NULL,
    name TEXT,
    email TEXT,
    registrant_id TEXT,
    person_key TEXT,                 -- the attendance person, when joined
    attended_seconds INTEGER,
    questions INTEGER,
    answered INTEGER,
    correct INTEGER,
    score_percent REAL,
    registered INTEGER NOT NULL,
    zoom_registered INTEGER NOT NULL,
    joined INTEGER NOT NULL,
    attended INTEGER NOT NULL,
    answered_quiz INTEGER NOT NULL,
    passed INTEGER NOT NULL,
    rules_id INTEGER,                -- meeting_rules row applied
    PRIMARY KEY (instance_uuid, person)
) WITHOUT ROWID
"""


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


def ordered_migrations() -> list:
    """Every migration, in the order they apply."""
    return list(migrations._migrations)


def migrate(db: Store) -> None:
    """Apply pending migrations once, even when several processes start together."""
    if isinstance(db, PostgresStore):
        postgres_schema.migrate_postgres(db)
        return
    if not migrations.pending(db):
        return
    with db.write_lock.hold(timeout=60):
        migrations.apply(db)


@migrations()
def m020_certificates(db: sqlite_utils.Database) -> None:
    """E-certificates, their hash-chained issuance and revocation events, and email sends (issue 17)."""
    _execute_each(db, _CERTIFICATES)


_CERTIFICATES = """
CREATE TABLE certificates (
    number INTEGER PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    instance_uuid TEXT,
    person_key TEXT NOT NULL,
    email TEXT,
    name TEXT NOT NULL,
    event TEXT,
    date TEXT NOT NULL,
    attended_minutes INTEGER NOT NULL,
    score TEXT,
    stage TEXT NOT NULL,
    rules TEXT NOT NULL,
    key_id TEXT NOT NULL,
    code TEXT NOT NULL UNIQUE,
    issued_at TEXT NOT NULL,
    revoked_at TEXT,
    revoked_reason TEXT,
    replaces INTEGER REFERENCES certificates (number),
    replaced_by INTEGER REFERENCES certificates (number)
);
CREATE UNIQUE INDEX certificates_live ON certificates (meeting_id, person_key) WHERE revoked_at IS NULL;
CREATE INDEX certificates_meeting ON certificates (meeting_id, number);
CREATE INDEX certificates_email ON certificates (email);
CREATE TABLE certificate_events (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL REFERENCES certificates (number),
    action TEXT NOT NULL CHECK (action IN ('issued', 'revoked')),
    at TEXT NOT NULL,
    body BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    chain_hash TEXT NOT NULL
);
CREATE INDEX certificate_events_number ON certificate_events (number);
CREATE TABLE certificate_sends (
    id INTEGER PRIMARY KEY,
    number INTEGER NOT NULL REFERENCES certificates (number),
    status TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'refused', 'failed', 'in_doubt')),
    recipient TEXT,
    message_id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    response TEXT
);
CREATE INDEX certificate_sends_number ON certificate_sends (number, status)
"""


@migrations()
def m030_ops_alerts(db: sqlite_utils.Database) -> None:
    """Alerts the worker raised (issue 18): one row per condition, kept across restarts."""
    # In the database, so /healthz (another process) sees them and a restarted worker
    # neither re-sends an incident's notice nor forgets to send its recovery.
    db.execute(
        """
        CREATE TABLE IF NOT EXISTS ops_alerts (
            key TEXT PRIMARY KEY,              -- the alert, or alert:subject (one per live meeting)
            alert TEXT NOT NULL,
            subject TEXT,
            message TEXT NOT NULL,
            raised_at TEXT NOT NULL,           -- start of the current (or last) incident
            cleared_at TEXT,                   -- NULL while the condition holds
            notified_raised_at TEXT,           -- when ALERT_WEBHOOK_URL took the incident's notice
            notified_cleared_at TEXT,          -- ... and its recovery
            updated_at TEXT NOT NULL
        )
        """
    )


@migrations()
def m050_people_sort_indexes(db: sqlite_utils.Database) -> None:
    """Indexes the dashboard's table pages walk: people by lowercased name and email, attendance still open."""
    # The expressions are exactly those of store/dashboard_queries.SORTS, or SQLite cannot use them (issue 15:
    # page 200 of 20,000 sorted by name took 158 ms through a full sort, under 10 ms walking this index).
    db.execute(
        "CREATE INDEX IF NOT EXISTS people_sort_name ON people (instance_uuid, lower(coalesce(name, '')), person_key)"
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS people_sort_email "
        "ON people (instance_uuid, lower(coalesce(email, '')), lower(coalesce(name, '')), person_key)"
    )
    # Whether anyone is still in decides how the table sorts by attended time; without this the
    # question read every attendance row of an ended instance (30 ms at 20,000 people).
    db.execute("CREATE INDEX IF NOT EXISTS attendance_open ON attendance (instance_uuid) WHERE open_since IS NOT NULL")
