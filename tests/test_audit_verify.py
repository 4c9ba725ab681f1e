"""`verify`: the hash chain catches edited, deleted, inserted and reordered records (issue 5)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from store import audit
from store.audit import ContentMismatch, HeadNotFound, LinkMismatch, open_readonly, verify_chain, verify_file
from store.evidence import GENESIS, chain_hash, content_hash
from tests.audit_support import joined, report_page, report_row, run_worker, store_report_page
from tests.conftest import post_event

COLUMNS = "source, received_at, body, sha256, chain_hash, zm_request_timestamp, zm_signature, stale_timestamp, url, meeting_uuid"


@pytest.fixture
def stored(client, db, config):
    """Six webhook deliveries and a report page, stored through the real app; returns the db path."""
    for n in range(6):
        assert post_event(client, joined(n)).status_code == 200
    store_report_page(db, report_page([report_row(1), report_row(2)]))
    return config.database_path


def tamper(path: str, *statements: tuple[str, tuple]) -> None:
    """Change the database behind the app's back, as someone with file access could."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    finally:
        conn.close()


@pytest.fixture(params=["one pass", "ranges in processes"])
def verify(request, monkeypatch):
    """verify_chain in one pass, and verify_file with ranges of 2 ids in 2 processes: same answers."""
    if request.param == "one pass":

        def one_pass(path: str, **kwargs):
            db = open_readonly(path)
            try:
                return verify_chain(db, **kwargs)
            finally:
                db.close()

        return one_pass
    monkeypatch.setattr(audit, "VERIFY_SPAN", 2)
    return lambda path, **kwargs: verify_file(path, workers=2, **kwargs)


def row(path: str, record_id: int) -> dict:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return dict(conn.execute(f"SELECT id, {COLUMNS} FROM raw_records WHERE id = ?", (record_id,)).fetchone())
    finally:
        conn.close()


def test_untouched_chain_verifies_with_count_and_head(stored, verify):
    head = verify(stored)
    assert head.count == 7
    assert head.record_id == 7
    assert head.chain_hash == row(stored, 7)["chain_hash"]
    assert verify(stored, expect_head=row(stored, 3)["chain_hash"]).count == 7


def test_empty_database_verifies_at_genesis(db, config, verify):
    head = verify(config.database_path)
    assert (head.count, head.record_id, head.chain_hash) == (0, None, GENESIS)


def test_edited_body_names_the_record(stored, verify):
    tamper(stored, ("UPDATE raw_records SET body = replace(body, 'Attendee 3', 'Attendee X') WHERE id = 4", ()))
    with pytest.raises(
        ContentMismatch, match=r"^record 4 \(webhook, received .*\): body does not match its SHA-256"
    ) as e:
        verify(stored)
    assert e.value.record_id == 4


def test_edited_body_with_recomputed_sha256_breaks_the_link(stored, verify):
    forged = row(stored, 4)["body"].replace(b"Attendee 3", b"Attendee X")
    tamper(stored, ("UPDATE raw_records SET body = ?, sha256 = ? WHERE id = 4", (forged, content_hash(forged))))
    with pytest.raises(LinkMismatch, match=r"^record 4 .*chain hash does not follow from record 3") as e:
        verify(stored)
    assert e.value.record_id == 4


def test_deleted_row_names_the_next_record_and_the_gap(stored, verify):
    tamper(stored, ("DELETE FROM raw_records WHERE id = 4", ()))
    with pytest.raises(LinkMismatch, match=r"^record 5 .*does not follow from record 3; record 4 missing") as e:
        verify(stored)
    assert e.value.record_id == 5


def test_deleted_last_rows_are_caught_by_the_recorded_head(stored, verify):
    head = verify(stored).chain_hash
    tamper(stored, ("DELETE FROM raw_records WHERE id >= 6", ()))
    assert verify(stored).count == 5  # the chain alone cannot see a cut-off tail...
    with pytest.raises(HeadNotFound, match=head):  # ...the head recorded earlier can
        verify(stored, expect_head=head)


def test_inserted_row_with_a_made_up_chain_hash_is_named(stored, verify):
    body = b'{"event":"webinar.participant_joined","payload":{}}'
    tamper(
        stored,
        (
            "INSERT INTO raw_records (id, source, received_at, body, sha256, chain_hash) VALUES (8, 'webhook', '2024-05-01T16:00:00.000000Z', ?, ?, ?)",
            (body, content_hash(body), "f" * 64),
        ),
    )
    with pytest.raises(LinkMismatch, match=r"^record 8 .*does not follow from record 7") as e:
        verify(stored)
    assert e.value.record_id == 8


def test_row_inserted_in_the_middle_with_a_valid_link_breaks_the_next(stored, verify):
    # A careful forger makes room after record 3 and chains the forgery to it correctly.
    body = joined(99, name="Never Attended")
    forged = repr(body).encode()
    received_at = row(stored, 3)["received_at"]
    link = chain_hash(row(stored, 3)["chain_hash"], content_hash(forged), received_at)
    tamper(
        stored,
        ("UPDATE raw_records SET id = id + 100 WHERE id > 3", ()),
        (
            "INSERT INTO raw_records (id, source, received_at, body, sha256, chain_hash) VALUES (4, 'webhook', ?, ?, ?, ?)",
            (received_at, forged, content_hash(forged), link),
        ),
    )
    with pytest.raises(LinkMismatch, match=r"^record 104 .*does not follow from record 4") as e:
        verify(stored)
    assert e.value.record_id == 104


def test_reordered_rows_are_named(stored, verify):
    four, five = row(stored, 4), row(stored, 5)
    names = COLUMNS.split(", ")
    assignments = ", ".join(f"{n} = ?" for n in names)
    tamper(
        stored,
        ("UPDATE raw_records SET sha256 = 'moving' WHERE id = 4", ()),
        (f"UPDATE raw_records SET {assignments} WHERE id = 5", tuple(four[n] for n in names)),
        (f"UPDATE raw_records SET {assignments} WHERE id = 4", tuple(five[n] for n in names)),
    )
    with pytest.raises(LinkMismatch, match=r"^record 4 .*does not follow from record 3") as e:
        verify(stored)
    assert e.value.record_id == 4


def test_rewritten_history_passes_the_chain_but_not_the_recorded_head(stored, verify):
    head = verify(stored).chain_hash
    # Someone edits record 2 and recomputes every hash after it: internally consistent...
    conn = sqlite3.connect(stored, isolation_level=None)
    forged = row(stored, 2)["body"].replace(b"Attendee 1", b"Somebody Else")
    conn.execute("UPDATE raw_records SET body = ?, sha256 = ? WHERE id = 2", (forged, content_hash(forged)))
    previous = GENESIS
    for record_id, sha, received_at in conn.execute(
        "SELECT id, sha256, received_at FROM raw_records ORDER BY id"
    ).fetchall():
        previous = chain_hash(previous, sha, received_at)
        conn.execute("UPDATE raw_records SET chain_hash = ? WHERE id = ?", (previous, record_id))
    conn.close()
    assert verify(stored).count == 7
    with pytest.raises(HeadNotFound):  # ...but the head an auditor holds is gone
        verify(stored, expect_head=head)


def test_verify_command_prints_ok_count_and_head(stored, verify):
    head = verify(stored).chain_hash
    result = run_worker("verify", "--database", stored, "--head", head)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines()[0] == f"OK 7 records, head {head} (record 7)"


def test_verify_command_fails_naming_the_record(stored):
    tamper(stored, ("DELETE FROM raw_records WHERE id = 2", ()))
    result = run_worker("verify", "--database", stored)
    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.decode().startswith("Error: FAILED: record 3 (webhook, received ")
    assert "record 2 missing" in result.stderr.decode()


def test_verify_command_refuses_a_missing_database(tmp_path):
    result = run_worker("verify", "--database", str(tmp_path / "nope.db"))
    assert result.returncode == 1
    assert b"does not exist" in result.stderr
    assert not (tmp_path / "nope.db").exists()  # never created by a read


def test_verify_json_reports_the_failure_as_json_and_exits_1(stored):
    tamper(stored, ("UPDATE raw_records SET body = replace(body, 'Attendee 3', 'Attendee X') WHERE id = 4", ()))
    result = run_worker("verify", "--json", "--database", stored)
    assert result.returncode == 1
    answer = json.loads(result.stdout)
    assert answer["ok"] is False and answer["chain"] == "raw_records" and answer["record_id"] == 4
    assert answer["reason"].startswith("record 4 (webhook, received ") and "SHA-256" in answer["reason"]
    assert result.stderr.decode().strip() == f"Error: FAILED: {answer['reason']}"
