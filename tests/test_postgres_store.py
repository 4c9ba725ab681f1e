"""The PostgreSQL store: schema, placeholders, locks and errors (issue 19)."""

from __future__ import annotations

import pytest

from store.db import DatabaseUnavailable, PostgresStore, durable_write, open_db
from store.migrations import migrate
from store.postgres import redact, translate
from store.postgres_schema import MIGRATIONS, pending


def test_placeholders_become_psycopg_ones_outside_literals():
    assert translate("SELECT ? , :name FROM t WHERE a = '?' AND b LIKE 'x%'") == (
        "SELECT %s , %(name)s FROM t WHERE a = '?' AND b LIKE 'x%%'"
    )
    assert translate("SELECT x::text, '12:30' FROM t") == "SELECT x::text, '12:30' FROM t"


def test_passwords_never_reach_messages():
    assert redact("postgresql://u:s3cret@db:5432/a") == "postgresql://u:***@db:5432/a"


def test_migrations_apply_once_and_give_sqlite_like_ids(pg_url):
    db = open_db(pg_url)
    assert isinstance(db, PostgresStore)
    migrate(db)
    migrate(db)
    assert pending(db) == []
    applied = [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY name")]
    assert applied == sorted(name for name, _ in MIGRATIONS)
    with durable_write(db) as conn:
        conn.execute("INSERT INTO meeting_rules (meeting_id, set_at) VALUES (?, ?)", ["1", "t"])
        conn.execute("INSERT INTO meeting_rules (meeting_id, set_at) VALUES (?, ?), (?, ?)", ["2", "t", "3", "t"])
    assert [r["id"] for r in db.query("SELECT id FROM meeting_rules ORDER BY id")] == [1, 2, 3]
    db.close()


def test_a_write_that_fails_leaves_nothing(pg_url):
    db = open_db(pg_url)
    migrate(db)
    with pytest.raises(RuntimeError), durable_write(db) as conn:
        conn.execute("INSERT INTO state (key, value) VALUES (?, ?)", ["k", "v"])
        raise RuntimeError("boom")
    assert db.execute("SELECT count(*) FROM state").fetchone()[0] == 0
    db.close()


def test_a_server_that_does_not_answer_is_unavailable(pg_server):
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        open_db(f"postgresql://{pg_server.user}@127.0.0.1:1/none")


def test_sqlite_triggers_and_views_behave_the_same(pg_url):
    db = open_db(pg_url)
    migrate(db)
    with durable_write(db) as conn:
        conn.execute("INSERT INTO instances (instance_uuid, meeting_id) VALUES ('i1', 'm1'), ('i2', 'm1')")
        conn.execute("DELETE FROM derived_dirty")
        conn.execute(
            "INSERT INTO registrants (meeting_id, registrant_id, email, name, status) "
            "VALUES ('m1', 'r1', 'a@example.com', 'A', 'approved')"
        )
    assert sorted(r[0] for r in db.execute("SELECT instance_uuid FROM derived_dirty")) == ["i1", "i2"]
    with durable_write(db) as conn:
        conn.execute("DELETE FROM derived_dirty")
        conn.execute("UPDATE instances SET topic = 'x' WHERE instance_uuid = 'i2'")
    assert [r[0] for r in db.execute("SELECT instance_uuid FROM derived_dirty")] == ["i2"]
    # The views run SQLite's SQL as written, through PostgreSQL twins of strftime and max(a, b).
    assert db.execute("SELECT strftime('%s', '2026-01-01T00:00:10Z'), max(0, -5)").fetchone() == ("1767225610", 0)
    assert db.execute("SELECT count(*) FROM registrant_attendance").fetchone()[0] == 0
    with durable_write(db) as conn:
        conn.execute(
            "INSERT INTO attendance_instances (instance_uuid, meeting_id, ended, report_complete, webhook_events,"
            " report_rows, people, in_meeting, total_attended_seconds, peak_concurrent) "
            "VALUES ('i1', 'm1', 0, 0, 1, 0, 1, 1, 0, 1)"
        )
        conn.execute(
            "INSERT INTO people (instance_uuid, person_key, identity, names, emails, registrant_ids,"
            " participant_user_ids, connection_ids) VALUES ('i1', 'p', 'email', '[]', '[]', '[]', '[]', '[]')"
        )
        conn.execute(
            "INSERT INTO attendance (instance_uuid, person_key, attended_seconds, open_since, segments, in_meeting,"
            " sources, seconds_from, webhook_only, registrant_matched) "
            "VALUES ('i1', 'p', 60, '2000-01-01T00:00:00Z', 1, 1, 'webhook', 'webhook', 1, 0)"
        )
    live = db.execute("SELECT attended_seconds FROM attendees").fetchone()[0]
    assert live > 60 + 26 * 365 * 86400  # open since 2000: grows with the clock, whatever the date
    db.close()


def test_a_session_the_restarted_server_ended_is_replaced_without_an_error(pg_server, pg_url):
    db = open_db(pg_url)
    migrate(db)
    pg_server.stop("fast")
    pg_server.start()
    # The first statement meets the dead session; it runs again on a new one, once.
    assert db.execute("SELECT count(*) FROM raw_records").fetchone()[0] == 0
    db.close()
