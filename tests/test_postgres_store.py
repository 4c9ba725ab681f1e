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
