"""The PostgreSQL schema: the same tables as SQLite's (store/migrations.py), in PostgreSQL's types.

Applied by `migrate` in order, each migration once, under an advisory lock. Text columns
use the "C" collation so that rows sort as SQLite sorts them (by code point)."""

from __future__ import annotations

import re
from collections.abc import Callable

import psycopg
import sqlite_utils

import store.migrations as sqlite_migrations
from store.errors import DatabaseOpenError
from store.postgres import PostgresStore, first_line, is_unavailable, redact

# The tables are defined once, by SQLite's migrations; PostgreSQL gets them translated:
# INTEGER is BIGINT, REAL is DOUBLE PRECISION, BLOB is BYTEA, text sorts by code point (the
# "C" collation, as SQLite's BINARY), foreign keys are DEFERRABLE so that copy-db can load
# rows that point forward (a certificate's replaced_by) in one transaction. Triggers and
# views are written for PostgreSQL below. p001 is SQLite's schema as of this migration; a
# later SQLite migration needs its PostgreSQL twin at the end of MIGRATIONS.
SQLITE_SCHEMA_AT = "m050_people_sort_indexes"
_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "TEXT": 'TEXT COLLATE "C"'}
_ROWID = re.compile(r"\b(\w+) INTEGER PRIMARY KEY\b")


def _later_migrations() -> list[str]:
    names = [m.name for m in sqlite_migrations.ordered_migrations()]
    return names[names.index(SQLITE_SCHEMA_AT) + 1 :]


def sqlite_schema() -> list[tuple[str, str, str]]:
    """(type, name, sql) of SQLite's tables and indexes as of SQLITE_SCHEMA_AT, in creation order."""
    db = sqlite_utils.Database(memory=True)
    sqlite_migrations.migrations.apply(db, stop_before=_later_migrations() or None)
    rows = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('table', 'index') AND sql IS NOT NULL"
        " AND name NOT LIKE '%sqlite_migrations%' ORDER BY rowid"
    ).fetchall()
    db.close()
    return rows


def _translate_table(sql: str) -> str:
    sql = re.sub(r"\)\s*WITHOUT ROWID\s*$", ")", sql.strip())
    sql = re.sub(r"\b(INTEGER|REAL|BLOB|TEXT)\b", lambda m: _TYPES[m.group(1)], sql)
    return re.sub(r"(REFERENCES \w+ \([^)]*\)(?: ON DELETE CASCADE)?)", r"\1 DEFERRABLE", sql)


def _referenced(sql: str) -> set[str]:
    return set(re.findall(r"REFERENCES (\w+)", sql))


def translated_tables() -> str:
    """SQLite's tables and indexes (store/migrations.py) as PostgreSQL DDL, referenced tables first."""
    schema = sqlite_schema()
    tables = {name: sql for kind, name, sql in schema if kind == "table"}
    ordered: list[str] = []

    def place(name: str) -> None:
        # SQLite adds columns (and their references) to a table after tables it refers to.
        if name in ordered:
            return
        for target in sorted(_referenced(tables[name]) - {name}):
            place(target)
        ordered.append(name)

    for name in tables:
        place(name)
    statements = [_translate_table(tables[name]) for name in ordered]
    statements += [sql for kind, _, sql in schema if kind == "index"]
    return ";\n\n".join(statements) + ";\n"


def _rowids() -> str:
    """SQLite gives an INTEGER PRIMARY KEY left out of an INSERT max + 1; the same here."""
    triggers = [
        f"CREATE TRIGGER {name}_next_{column} BEFORE INSERT ON {name} FOR EACH ROW WHEN (NEW.{column} IS NULL)"
        f" EXECUTE FUNCTION next_rowid('{column}');"
        for kind, name, sql in sqlite_schema()
        if kind == "table"
        for column in _ROWID.findall(sql)[:1]
    ]
    return NEXT_ROWID + "\n".join(triggers)


# So ids, fetch numbers and certificate numbers are the same on both stores. Every writer
# holds the write lock (an advisory lock, store/postgres.py), so max + 1 is never taken twice.
NEXT_ROWID = """
CREATE FUNCTION next_rowid() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    next_id BIGINT;
BEGIN
    EXECUTE format('SELECT coalesce(max(%I), 0) + 1 FROM %I', TG_ARGV[0], TG_TABLE_NAME) INTO next_id;
    NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], next_id));
    RETURN NEW;
END
$$;
"""

# The instances whose derived attendance must be recomputed (SQLite's triggers, m010): the
# instance a row names in the column given to the trigger, or every instance of its meeting.
DERIVED_DIRTY = """
CREATE FUNCTION mark_dirty() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_ARGV[0] = 'meeting_id' THEN
        INSERT INTO derived_dirty (instance_uuid)
            SELECT instance_uuid FROM instances WHERE meeting_id = NEW.meeting_id ON CONFLICT DO NOTHING;
    ELSE
        INSERT INTO derived_dirty (instance_uuid) VALUES (to_jsonb(NEW) ->> TG_ARGV[0]) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER derived_dirty_delivery AFTER UPDATE OF meeting_uuid ON raw_records
    FOR EACH ROW WHEN (NEW.meeting_uuid IS NOT NULL) EXECUTE FUNCTION mark_dirty('meeting_uuid');
CREATE TRIGGER derived_dirty_instance AFTER INSERT OR UPDATE ON instances
    FOR EACH ROW EXECUTE FUNCTION mark_dirty('instance_uuid');
CREATE TRIGGER derived_dirty_registrant AFTER INSERT OR UPDATE ON registrants
    FOR EACH ROW EXECUTE FUNCTION mark_dirty('meeting_id');
"""

# The two SQLite functions the views use, so that SQLite's views run here as written:
# strftime('%s', t) (epoch seconds of an ISO-8601 time, or of 'now') and the scalar max(a, b).
SQLITE_FUNCTIONS = """
CREATE FUNCTION strftime(format TEXT, moment TEXT) RETURNS TEXT LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN format = '%s' THEN
        floor(extract(epoch FROM CASE WHEN moment = 'now' THEN now() ELSE moment::timestamptz END))::bigint::text
    END
$$;
CREATE FUNCTION max(a BIGINT, b BIGINT) RETURNS BIGINT LANGUAGE sql IMMUTABLE AS $$ SELECT greatest(a, b) $$;
"""


def sqlite_views() -> str:
    """SQLite's views as of SQLITE_SCHEMA_AT, run as written (with SQLITE_FUNCTIONS)."""
    db = sqlite_utils.Database(memory=True)
    sqlite_migrations.migrations.apply(db, stop_before=_later_migrations() or None)
    views = [row[0] for row in db.execute("SELECT sql FROM sqlite_master WHERE type = 'view' ORDER BY rowid")]
    db.close()
    return SQLITE_FUNCTIONS + ";\n".join(views) + ";\n"


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

MIGRATIONS: list[tuple[str, str | Callable[[], str]]] = [
    ("p001_tables", translated_tables),
    ("p002_rowids", _rowids),
    ("p003_derived_dirty", DERIVED_DIRTY),
    ("p004_views", sqlite_views),
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
    """Apply pending migrations once, in order, even when several processes start together.

    A refusal (no privilege, a database in another state) is DatabaseOpenError: one line
    that names the fix, never a traceback."""
    try:
        _migrate(db)
    except psycopg.errors.InsufficientPrivilege as e:
        raise DatabaseOpenError(
            f"the role cannot create tables in schema public of {redact(db.path)} ({first_line(e)}): make it"
            " the database's owner (CREATE DATABASE ... OWNER role, or ALTER DATABASE ... OWNER TO role)"
            " or GRANT CREATE ON SCHEMA public TO role"
        ) from None
    except psycopg.Error as e:
        if is_unavailable(e):
            raise
        raise DatabaseOpenError(f"cannot migrate {redact(db.path)}: {first_line(e)}") from None


def _migrate(db: PostgresStore) -> None:
    if not pending(db):
        return
    with db.write_lock.hold(timeout=60):
        todo = set(pending(db))  # another process may have applied them meanwhile
        for name, ddl in MIGRATIONS:
            if name in todo:
                with db.durable_write() as conn:
                    conn.raw.execute((ddl if isinstance(ddl, str) else ddl()).encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
