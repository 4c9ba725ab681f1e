"""The PostgreSQL schema: the same tables as SQLite's (store/migrations.py), in PostgreSQL's types.

Applied by `migrate` in order, each migration once, under an advisory lock. Text columns
use the "C" collation so that rows sort as SQLite sorts them (by code point)."""

from __future__ import annotations

from store.postgres import PostgresStore

# The SQLite schema's final state, written for PostgreSQL: INTEGER is BIGINT, REAL is DOUBLE
# PRECISION, BLOB is BYTEA; foreign keys are DEFERRABLE so that copy-db can load rows that
# point forward (a certificate's replaced_by) in one transaction.
TABLES = """
CREATE TABLE raw_records (
            id BIGINT PRIMARY KEY,
            source TEXT COLLATE "C" NOT NULL CHECK (source IN ('webhook', 'report', 'import')),
            received_at TEXT COLLATE "C" NOT NULL,
            body BYTEA NOT NULL,
            sha256 TEXT COLLATE "C" NOT NULL,
            chain_hash TEXT COLLATE "C" NOT NULL,
            -- webhook deliveries
            zm_request_timestamp TEXT COLLATE "C",
            zm_signature TEXT COLLATE "C",
            zm_request_id TEXT COLLATE "C",
            zm_trackingid TEXT COLLATE "C",
            stale_timestamp BIGINT NOT NULL DEFAULT 0,
            -- filled by normalization (not covered by the chain: derived, not evidence)
            event TEXT COLLATE "C",
            meeting_id TEXT COLLATE "C",
            meeting_uuid TEXT COLLATE "C",
            parse_error TEXT COLLATE "C",
            -- report pages
            url TEXT COLLATE "C",
            UNIQUE (source, sha256)
        );

CREATE INDEX raw_records_meeting_uuid ON raw_records (meeting_uuid);

CREATE INDEX raw_records_received_at ON raw_records (received_at);

CREATE TABLE participant_events (
            id BIGINT PRIMARY KEY,
            raw_id BIGINT NOT NULL REFERENCES raw_records (id) DEFERRABLE,
            item BIGINT NOT NULL DEFAULT 0,
            event TEXT COLLATE "C" NOT NULL,
            kind TEXT COLLATE "C",
            meeting_id TEXT COLLATE "C",
            instance_uuid TEXT COLLATE "C",
            topic TEXT COLLATE "C",
            user_id TEXT COLLATE "C",
            participant_uuid TEXT COLLATE "C",
            participant_user_id TEXT COLLATE "C",
            registrant_id TEXT COLLATE "C",
            email TEXT COLLATE "C",
            user_name TEXT COLLATE "C",
            phone_number TEXT COLLATE "C",
            customer_key TEXT COLLATE "C",
            join_time TEXT COLLATE "C",
            leave_time TEXT COLLATE "C",
            date_time TEXT COLLATE "C",
            leave_reason TEXT COLLATE "C",
            event_ts BIGINT,
            UNIQUE (raw_id, item)
        );

CREATE INDEX participant_events_instance ON participant_events (instance_uuid, event);

CREATE INDEX participant_events_email ON participant_events (email);

CREATE INDEX participant_events_registrant ON participant_events (registrant_id);

CREATE TABLE report_fetches (
            id BIGINT PRIMARY KEY,
            instance_uuid TEXT COLLATE "C" NOT NULL,
            kind TEXT COLLATE "C",
            started_at TEXT COLLATE "C" NOT NULL,
            completed_at TEXT COLLATE "C",
            status TEXT COLLATE "C" NOT NULL DEFAULT 'running',  -- running | complete | failed
            error TEXT COLLATE "C",
            pages BIGINT NOT NULL DEFAULT 0,
            rows BIGINT NOT NULL DEFAULT 0,
            api_calls BIGINT NOT NULL DEFAULT 0
        , meeting_id TEXT COLLATE "C", new_rows BIGINT NOT NULL DEFAULT 0, zero_duration_rows BIGINT NOT NULL DEFAULT 0, restarts BIGINT NOT NULL DEFAULT 0);

CREATE INDEX report_fetches_instance ON report_fetches (instance_uuid);

CREATE TABLE instances (
            instance_uuid TEXT COLLATE "C" PRIMARY KEY,
            meeting_id TEXT COLLATE "C",
            kind TEXT COLLATE "C",
            topic TEXT COLLATE "C",
            host_id TEXT COLLATE "C",
            start_time TEXT COLLATE "C",
            end_time TEXT COLLATE "C",
            started_event_ts BIGINT,
            ended_event_ts BIGINT,
            topic_event_ts BIGINT,
            first_seen_at TEXT COLLATE "C"
        , report_fetch_id BIGINT REFERENCES report_fetches (id) DEFERRABLE, report_complete BIGINT NOT NULL DEFAULT 0, report_fetched_at TEXT COLLATE "C");

CREATE INDEX instances_meeting_id ON instances (meeting_id);

CREATE TABLE tracked_meetings (
            meeting_id TEXT COLLATE "C" PRIMARY KEY,
            kind TEXT COLLATE "C",
            topic TEXT COLLATE "C",
            source TEXT COLLATE "C" NOT NULL,
            added_at TEXT COLLATE "C" NOT NULL
        );

CREATE TABLE state (
            key TEXT COLLATE "C" PRIMARY KEY,
            value TEXT COLLATE "C"
        );

CREATE TABLE report_rows (
            id BIGINT PRIMARY KEY,
            instance_uuid TEXT COLLATE "C" NOT NULL,
            row_hash TEXT COLLATE "C" NOT NULL,        -- SHA-256 of the row's canonical JSON: re-fetches dedupe on it
            raw_id BIGINT REFERENCES raw_records (id) DEFERRABLE,  -- the page it came from
            fetch_id BIGINT REFERENCES report_fetches (id) DEFERRABLE,  -- last fetch that saw it
            user_id TEXT COLLATE "C",
            participant_user_id TEXT COLLATE "C",
            registrant_id TEXT COLLATE "C",
            name TEXT COLLATE "C",
            user_email TEXT COLLATE "C",
            join_time TEXT COLLATE "C",
            leave_time TEXT COLLATE "C",
            duration BIGINT,
            status TEXT COLLATE "C",
            bo_mtg_id TEXT COLLATE "C",
            customer_key TEXT COLLATE "C",
            failover BIGINT,
            UNIQUE (instance_uuid, row_hash)
        );

CREATE INDEX report_rows_fetch ON report_rows (instance_uuid, fetch_id);

CREATE INDEX report_rows_email ON report_rows (user_email);

CREATE INDEX report_rows_registrant ON report_rows (registrant_id);

CREATE TABLE registrants (
            meeting_id TEXT COLLATE "C" NOT NULL,
            registrant_id TEXT COLLATE "C" NOT NULL,
            email TEXT COLLATE "C",
            first_name TEXT COLLATE "C",
            last_name TEXT COLLATE "C",
            name TEXT COLLATE "C",
            status TEXT COLLATE "C",
            create_time TEXT COLLATE "C",
            raw_id BIGINT REFERENCES raw_records (id) DEFERRABLE,
            fetched_at TEXT COLLATE "C",
            PRIMARY KEY (meeting_id, registrant_id)
        );

CREATE INDEX registrants_email ON registrants (email);

CREATE TABLE report_fetch_seen (
            fetch_id BIGINT NOT NULL REFERENCES report_fetches (id) DEFERRABLE,
            row_id BIGINT NOT NULL REFERENCES report_rows (id) DEFERRABLE,
            PRIMARY KEY (fetch_id, row_id)
        );

CREATE TABLE report_schedule (
            instance_uuid TEXT COLLATE "C" PRIMARY KEY,
            meeting_id TEXT COLLATE "C",
            kind TEXT COLLATE "C",
            ended_at TEXT COLLATE "C" NOT NULL,            -- end of the instance, or when we learned it had ended
            stage BIGINT NOT NULL DEFAULT 0,  -- index into REPORT_FETCH_DELAYS of the next fetch
            due_at TEXT COLLATE "C",                       -- NULL once nothing more is planned
            status TEXT COLLATE "C" NOT NULL DEFAULT 'pending',  -- pending | done | gave_up
            attempts BIGINT NOT NULL DEFAULT 0,     -- failures since the last complete fetch
            extra_fetches BIGINT NOT NULL DEFAULT 0,  -- fetches added for unprocessed rows
            last_fetch_id BIGINT REFERENCES report_fetches (id) DEFERRABLE,
            last_error TEXT COLLATE "C",
            claimed_by TEXT COLLATE "C",                   -- host:pid of the worker fetching it now
            claimed_until TEXT COLLATE "C",
            updated_at TEXT COLLATE "C" NOT NULL
        );

CREATE INDEX report_schedule_due ON report_schedule (status, due_at);

CREATE TABLE report_discovery (
            meeting_id TEXT COLLATE "C" PRIMARY KEY,
            checked_at TEXT COLLATE "C" NOT NULL,
            instances BIGINT NOT NULL DEFAULT 0,
            error TEXT COLLATE "C"
        );

CREATE INDEX raw_records_meeting_id ON raw_records (meeting_id);

CREATE TABLE attendance_instances (
    instance_uuid TEXT COLLATE "C" PRIMARY KEY REFERENCES instances (instance_uuid) DEFERRABLE,
    meeting_id TEXT COLLATE "C",
    kind TEXT COLLATE "C",
    topic TEXT COLLATE "C",
    start_time TEXT COLLATE "C",
    end_time TEXT COLLATE "C",
    window_seconds BIGINT,
    ended BIGINT NOT NULL,
    report_complete BIGINT NOT NULL,
    webhook_events BIGINT NOT NULL,
    report_rows BIGINT NOT NULL,
    registered BIGINT,
    people BIGINT NOT NULL,
    in_meeting BIGINT NOT NULL,
    total_attended_seconds BIGINT NOT NULL,
    peak_concurrent BIGINT NOT NULL,
    peak_at TEXT COLLATE "C",
    evidence TEXT COLLATE "C"
);

CREATE INDEX attendance_instances_meeting ON attendance_instances (meeting_id, start_time);

CREATE TABLE people (
    instance_uuid TEXT COLLATE "C" NOT NULL REFERENCES attendance_instances (instance_uuid) ON DELETE CASCADE DEFERRABLE,
    person_key TEXT COLLATE "C" NOT NULL,
    identity TEXT COLLATE "C" NOT NULL CHECK (identity IN ('registrant', 'email', 'user', 'name')),
    name TEXT COLLATE "C",
    email TEXT COLLATE "C",
    registrant_id TEXT COLLATE "C",
    participant_user_id TEXT COLLATE "C",
    names TEXT COLLATE "C" NOT NULL,
    emails TEXT COLLATE "C" NOT NULL,
    registrant_ids TEXT COLLATE "C" NOT NULL,
    participant_user_ids TEXT COLLATE "C" NOT NULL,
    connection_ids TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_uuid, person_key)
);

CREATE INDEX people_email ON people (email);

CREATE INDEX people_registrant ON people (registrant_id);

CREATE TABLE attendance (
    instance_uuid TEXT COLLATE "C" NOT NULL,
    person_key TEXT COLLATE "C" NOT NULL,
    attended_seconds BIGINT NOT NULL,
    open_since TEXT COLLATE "C",
    segments BIGINT NOT NULL,
    first_join TEXT COLLATE "C",
    last_leave TEXT COLLATE "C",
    in_meeting BIGINT NOT NULL,
    sources TEXT COLLATE "C" NOT NULL,
    seconds_from TEXT COLLATE "C" NOT NULL CHECK (seconds_from IN ('webhook', 'report')),
    webhook_only BIGINT NOT NULL,
    webhook_seconds BIGINT,
    report_seconds BIGINT,
    registrant_id TEXT COLLATE "C",
    registrant_matched BIGINT NOT NULL,
    registrant_match TEXT COLLATE "C",
    PRIMARY KEY (instance_uuid, person_key),
    FOREIGN KEY (instance_uuid, person_key) REFERENCES people (instance_uuid, person_key) ON DELETE CASCADE DEFERRABLE
);

CREATE INDEX attendance_seconds ON attendance (instance_uuid, attended_seconds);

CREATE INDEX attendance_registrant ON attendance (registrant_id);

CREATE TABLE attendance_sessions (
    instance_uuid TEXT COLLATE "C" NOT NULL,
    person_key TEXT COLLATE "C" NOT NULL,
    start_time TEXT COLLATE "C" NOT NULL,
    end_time TEXT COLLATE "C",
    seconds BIGINT,
    open BIGINT NOT NULL,
    sources TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (instance_uuid, person_key, start_time),
    FOREIGN KEY (instance_uuid, person_key) REFERENCES people (instance_uuid, person_key) ON DELETE CASCADE DEFERRABLE
);

CREATE INDEX participant_events_instance_raw ON participant_events (instance_uuid, raw_id);

CREATE TABLE derived_dirty (
    instance_uuid TEXT COLLATE "C" PRIMARY KEY
);

END;

END;

END;

END;

END;

CREATE TABLE derived_refreshes (instance_uuid TEXT COLLATE "C" PRIMARY KEY, refreshed_at TEXT COLLATE "C" NOT NULL, seconds DOUBLE PRECISION);

CREATE TABLE spool_files (
            name TEXT COLLATE "C" PRIMARY KEY,
            imported_bytes BIGINT NOT NULL,
            imported_records BIGINT NOT NULL DEFAULT 0,
            updated_at TEXT COLLATE "C" NOT NULL
        );

CREATE TABLE polls (
    meeting_id TEXT COLLATE "C" NOT NULL,
    poll_id TEXT COLLATE "C" NOT NULL,
    title TEXT COLLATE "C",
    poll_type BIGINT NOT NULL,      -- 1 poll, 2 advanced poll, 3 quiz
    anonymous BIGINT NOT NULL,
    status TEXT COLLATE "C",
    raw_id BIGINT REFERENCES raw_records (id) DEFERRABLE,  -- the definitions page it was read from
    PRIMARY KEY (meeting_id, poll_id)
);

CREATE TABLE poll_questions (
    meeting_id TEXT COLLATE "C" NOT NULL,
    poll_id TEXT COLLATE "C" NOT NULL,
    number BIGINT NOT NULL,
    question TEXT COLLATE "C" NOT NULL,
    type TEXT COLLATE "C" NOT NULL,
    answers TEXT COLLATE "C" NOT NULL,           -- JSON list
    right_answers TEXT COLLATE "C" NOT NULL,     -- JSON list (quizzes)
    PRIMARY KEY (meeting_id, poll_id, number)
);

CREATE TABLE poll_answers (
    instance_uuid TEXT COLLATE "C" NOT NULL,
    raw_id BIGINT NOT NULL REFERENCES raw_records (id) DEFERRABLE,  -- the poll report page
    entry BIGINT NOT NULL,          -- index of the participant in the page's `questions`
    detail BIGINT NOT NULL,         -- index in that participant's `question_details`
    name TEXT COLLATE "C",
    email TEXT COLLATE "C",
    anonymous BIGINT NOT NULL,
    poll_id TEXT COLLATE "C",
    question TEXT COLLATE "C" NOT NULL,
    answer TEXT COLLATE "C",
    date_time TEXT COLLATE "C",
    PRIMARY KEY (instance_uuid, entry, detail)
);

CREATE TABLE quiz_scores (
    instance_uuid TEXT COLLATE "C" NOT NULL,
    poll_id TEXT COLLATE "C" NOT NULL,
    person TEXT COLLATE "C" NOT NULL,            -- email:<normalized>, anonymous:<entry> or unmatched:<entry>
    email TEXT COLLATE "C",
    name TEXT COLLATE "C",
    anonymous BIGINT NOT NULL,
    questions BIGINT NOT NULL,
    answered BIGINT NOT NULL,
    correct BIGINT NOT NULL,
    score_percent DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (instance_uuid, poll_id, person)
);

CREATE TABLE registration_imports (
    id BIGINT PRIMARY KEY,
    meeting_id TEXT COLLATE "C" NOT NULL,
    raw_id BIGINT NOT NULL REFERENCES raw_records (id) DEFERRABLE,  -- the file's bytes, in the chain
    filename TEXT COLLATE "C",
    sha256 TEXT COLLATE "C" NOT NULL,
    imported_at TEXT COLLATE "C" NOT NULL,
    rows BIGINT NOT NULL,
    valid BIGINT NOT NULL,
    rejected BIGINT NOT NULL,
    UNIQUE (meeting_id, sha256)
);

CREATE TABLE outside_registrations (
    meeting_id TEXT COLLATE "C" NOT NULL,
    email_key TEXT COLLATE "C" NOT NULL,         -- trimmed, lower-cased: what matching uses
    email TEXT COLLATE "C" NOT NULL,             -- as written in the file
    name TEXT COLLATE "C",
    extra TEXT COLLATE "C" NOT NULL,             -- JSON object of the file's other columns
    import_id BIGINT NOT NULL REFERENCES registration_imports (id) DEFERRABLE,
    line BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, email_key)
);

CREATE TABLE registration_rejects (
    import_id BIGINT NOT NULL REFERENCES registration_imports (id) DEFERRABLE,
    line BIGINT NOT NULL,
    email TEXT COLLATE "C",
    reason TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (import_id, line)
);

CREATE TABLE meeting_rules (
    id BIGINT PRIMARY KEY,          -- a new row per change: the history is the table
    meeting_id TEXT COLLATE "C" NOT NULL,
    min_minutes DOUBLE PRECISION,
    min_percent DOUBLE PRECISION,
    pass_percent DOUBLE PRECISION,
    set_at TEXT COLLATE "C" NOT NULL
);

CREATE INDEX meeting_rules_meeting ON meeting_rules (meeting_id, id);

CREATE TABLE funnel_people (
    instance_uuid TEXT COLLATE "C" NOT NULL,
    person TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C",
    email TEXT COLLATE "C",
    registrant_id TEXT COLLATE "C",
    person_key TEXT COLLATE "C",                 -- the attendance person, when joined
    attended_seconds BIGINT,
    questions BIGINT,
    answered BIGINT,
    correct BIGINT,
    score_percent DOUBLE PRECISION,
    registered BIGINT NOT NULL,
    zoom_registered BIGINT NOT NULL,
    joined BIGINT NOT NULL,
    attended BIGINT NOT NULL,
    answered_quiz BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    rules_id BIGINT,                -- meeting_rules row applied
    PRIMARY KEY (instance_uuid, person)
);

CREATE TABLE certificates (
    number BIGINT PRIMARY KEY,
    meeting_id TEXT COLLATE "C" NOT NULL,
    instance_uuid TEXT COLLATE "C",
    person_key TEXT COLLATE "C" NOT NULL,
    email TEXT COLLATE "C",
    name TEXT COLLATE "C" NOT NULL,
    event TEXT COLLATE "C",
    date TEXT COLLATE "C" NOT NULL,
    attended_minutes BIGINT NOT NULL,
    score TEXT COLLATE "C",
    stage TEXT COLLATE "C" NOT NULL,
    rules TEXT COLLATE "C" NOT NULL,
    key_id TEXT COLLATE "C" NOT NULL,
    code TEXT COLLATE "C" NOT NULL UNIQUE,
    issued_at TEXT COLLATE "C" NOT NULL,
    revoked_at TEXT COLLATE "C",
    revoked_reason TEXT COLLATE "C",
    replaces BIGINT REFERENCES certificates (number) DEFERRABLE,
    replaced_by BIGINT REFERENCES certificates (number) DEFERRABLE
);

CREATE UNIQUE INDEX certificates_live ON certificates (meeting_id, person_key) WHERE revoked_at IS NULL;

CREATE INDEX certificates_meeting ON certificates (meeting_id, number);

CREATE INDEX certificates_email ON certificates (email);

CREATE TABLE certificate_events (
    id BIGINT PRIMARY KEY,
    number BIGINT NOT NULL REFERENCES certificates (number) DEFERRABLE,
    action TEXT COLLATE "C" NOT NULL CHECK (action IN ('issued', 'revoked')),
    at TEXT COLLATE "C" NOT NULL,
    body BYTEA NOT NULL,
    sha256 TEXT COLLATE "C" NOT NULL,
    chain_hash TEXT COLLATE "C" NOT NULL
);

CREATE INDEX certificate_events_number ON certificate_events (number);

CREATE TABLE certificate_sends (
    id BIGINT PRIMARY KEY,
    number BIGINT NOT NULL REFERENCES certificates (number) DEFERRABLE,
    status TEXT COLLATE "C" NOT NULL CHECK (status IN ('sending', 'sent', 'refused', 'failed', 'in_doubt')),
    recipient TEXT COLLATE "C",
    message_id TEXT COLLATE "C" NOT NULL,
    started_at TEXT COLLATE "C" NOT NULL,
    finished_at TEXT COLLATE "C",
    response TEXT COLLATE "C"
);

CREATE INDEX certificate_sends_number ON certificate_sends (number, status);

CREATE TABLE ops_alerts (
            key TEXT COLLATE "C" PRIMARY KEY,              -- the alert, or alert:subject (one per live meeting)
            alert TEXT COLLATE "C" NOT NULL,
            subject TEXT COLLATE "C",
            message TEXT COLLATE "C" NOT NULL,
            raised_at TEXT COLLATE "C" NOT NULL,           -- start of the current (or last) incident
            cleared_at TEXT COLLATE "C",                   -- NULL while the condition holds
            notified_raised_at TEXT COLLATE "C",           -- when ALERT_WEBHOOK_URL took the incident's notice
            notified_cleared_at TEXT COLLATE "C",          -- ... and its recovery
            updated_at TEXT COLLATE "C" NOT NULL
        );

CREATE INDEX people_sort_name ON people (instance_uuid, lower(coalesce(name, '')), person_key);

CREATE INDEX people_sort_email ON people (instance_uuid, lower(coalesce(email, '')), lower(coalesce(name, '')), person_key);

CREATE INDEX attendance_open ON attendance (instance_uuid) WHERE open_since IS NOT NULL;

"""

# SQLite gives an INTEGER PRIMARY KEY left out of an INSERT max + 1; the same here, so that
# ids, fetch numbers and certificate numbers are the same on both stores. Every writer holds
# the write lock (an advisory lock, store/postgres.py), so max + 1 is never taken twice.
ROWIDS = """
CREATE FUNCTION next_rowid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id BIGINT;
BEGIN
    EXECUTE format('SELECT coalesce(max(%I), 0) + 1 FROM %I', TG_ARGV[0], TG_TABLE_NAME) INTO next_id;
    NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], next_id));
    RETURN NEW;
END
$$;

CREATE TRIGGER raw_records_next_id BEFORE INSERT ON raw_records FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER participant_events_next_id BEFORE INSERT ON participant_events FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER report_fetches_next_id BEFORE INSERT ON report_fetches FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER report_rows_next_id BEFORE INSERT ON report_rows FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER registration_imports_next_id BEFORE INSERT ON registration_imports FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER meeting_rules_next_id BEFORE INSERT ON meeting_rules FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER certificates_next_number BEFORE INSERT ON certificates FOR EACH ROW WHEN (NEW.number IS NULL)
    EXECUTE FUNCTION next_rowid('number');
CREATE TRIGGER certificate_events_next_id BEFORE INSERT ON certificate_events FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
CREATE TRIGGER certificate_sends_next_id BEFORE INSERT ON certificate_sends FOR EACH ROW WHEN (NEW.id IS NULL)
    EXECUTE FUNCTION next_rowid('id');
"""

# The instances whose derived attendance must be recomputed (SQLite's triggers, m010).
DERIVED_DIRTY = """
CREATE FUNCTION mark_dirty(uuid TEXT) RETURNS void LANGUAGE sql AS $$
    INSERT INTO derived_dirty (instance_uuid) VALUES (uuid) ON CONFLICT DO NOTHING
$$;

CREATE FUNCTION derived_dirty_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM mark_dirty(NEW.meeting_uuid);
    RETURN NULL;
END
$$;
CREATE TRIGGER derived_dirty_delivery AFTER UPDATE OF meeting_uuid ON raw_records
    FOR EACH ROW WHEN (NEW.meeting_uuid IS NOT NULL) EXECUTE FUNCTION derived_dirty_delivery();

CREATE FUNCTION derived_dirty_instance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM mark_dirty(NEW.instance_uuid);
    RETURN NULL;
END
$$;
CREATE TRIGGER derived_dirty_instance AFTER INSERT OR UPDATE ON instances
    FOR EACH ROW EXECUTE FUNCTION derived_dirty_instance();

CREATE FUNCTION derived_dirty_registrant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO derived_dirty (instance_uuid)
        SELECT instance_uuid FROM instances WHERE meeting_id = NEW.meeting_id
        ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;
CREATE TRIGGER derived_dirty_registrant AFTER INSERT OR UPDATE ON registrants
    FOR EACH ROW EXECUTE FUNCTION derived_dirty_registrant();
"""

VIEWS = """
CREATE VIEW attendees AS
SELECT ai.meeting_id, a.instance_uuid, a.person_key, p.identity, p.name, p.email, a.registrant_id,
    a.attended_seconds + CASE WHEN a.open_since IS NULL THEN 0 ELSE
        greatest(0, floor(extract(epoch FROM now()))::bigint - floor(extract(epoch FROM a.open_since::timestamptz))::bigint) END
        AS attended_seconds,
    a.segments, a.first_join, a.last_leave, a.in_meeting, a.sources, a.webhook_only,
    a.seconds_from, a.webhook_seconds, a.report_seconds, a.registrant_matched
FROM attendance a
JOIN people p ON p.instance_uuid = a.instance_uuid AND p.person_key = a.person_key
JOIN attendance_instances ai ON ai.instance_uuid = a.instance_uuid;

CREATE VIEW registrant_attendance AS
SELECT r.meeting_id, ai.instance_uuid, r.registrant_id, r.email, r.name, r.status,
    a.person_key, coalesce(a.attended_seconds, 0) AS attended_seconds, a.first_join, a.last_leave,
    CASE WHEN a.person_key IS NOT NULL THEN 1 ELSE 0 END AS attended
FROM registrants r
JOIN attendance_instances ai ON ai.meeting_id = r.meeting_id
LEFT JOIN attendance a ON a.instance_uuid = ai.instance_uuid AND a.registrant_id = r.registrant_id
    AND a.registrant_matched = 1;
"""

# Webhook deliveries committed by any web process, waiting for the one chain writer to give
# them their place in raw_records (store/intake.py). Unique by body like raw_records.
INTAKE = """
CREATE TABLE webhook_intake (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
    received_at TEXT COLLATE "C" NOT NULL,
    body BYTEA NOT NULL,
    zm_request_timestamp TEXT COLLATE "C",
    zm_signature TEXT COLLATE "C",
    zm_request_id TEXT COLLATE "C",
    zm_trackingid TEXT COLLATE "C",
    stale_timestamp BIGINT NOT NULL DEFAULT 0
);
"""

MIGRATIONS: list[tuple[str, str]] = [
    ("p001_tables", TABLES),
    ("p002_rowids", ROWIDS),
    ("p003_derived_dirty", DERIVED_DIRTY),
    ("p004_views", VIEWS),
    ("p005_webhook_intake", INTAKE),
]


def pending(db: PostgresStore) -> list[str]:
    """The migrations not applied to this database yet."""
    if db.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        # Under the lock: concurrent CREATE TABLE IF NOT EXISTS fail with a unique violation
        # in PostgreSQL's catalog (several web processes starting on a new database at once).
        with db.write_lock.hold(timeout=60):
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
    applied = {row[0] for row in db.execute("SELECT name FROM schema_migrations")}
    return [name for name, _ in MIGRATIONS if name not in applied]


def migrate_postgres(db: PostgresStore) -> None:
    """Apply pending migrations once, in order, even when several processes start together."""
    if not pending(db):
        return
    with db.write_lock.hold(timeout=60):
        todo = set(pending(db))  # another process may have applied them meanwhile
        for name, ddl in MIGRATIONS:
            if name in todo:
                with db.durable_write() as conn:
                    conn.raw.execute(ddl.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
