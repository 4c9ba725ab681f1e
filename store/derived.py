"""The SQL of the derived attendance tables (issue 8): reading an instance's evidence,
writing its rows in short transactions, and the refresh lock.

The refresh itself (rules applied, pacing) is integrations/derived/refresh.py; the schema
and the triggers that mark changed instances are in store/migrations.py."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from store.db import Store, durable_write, read_snapshot
from store.evidence import utc_now

log = logging.getLogger(__name__)

# Bump when the rules change: every instance then reads as stale and is recomputed.
RULES_VERSION = "1"
CHUNK_ROWS = 500  # measured: 500 changed rows commit in about 20 ms on this machine under load
REFRESH_LOCK_TIMEOUT = 60.0


# Derived tables and their primary keys, parents first (the order rows are upserted in).
TABLES: dict[str, tuple[str, ...]] = {
    "people": ("instance_uuid", "person_key"),
    "attendance": ("instance_uuid", "person_key"),
    "attendance_sessions": ("instance_uuid", "person_key", "start_time"),
}


@dataclass
class Evidence:
    """Everything one instance's attendance is computed from, read in one snapshot."""

    instance: dict[str, Any]
    webhook_events: int
    events: list[dict[str, Any]]
    report_rows: list[dict[str, Any]]
    registrants: list[dict[str, Any]]
    fingerprint: str


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def report_is_complete(instance: dict[str, Any]) -> bool:
    """True when the instance points at a complete report fetch (only then are its rows read)."""
    return bool(instance.get("report_complete")) and instance.get("report_fetch_id") is not None


def fingerprint(db: Store, uuid: str) -> str | None:
    """A digest of the evidence of one instance; None when the instance is unknown."""
    row = db.execute(
        """
        SELECT i.meeting_id, i.kind, i.topic, i.start_time, i.end_time, i.started_event_ts,
            i.ended_event_ts, i.report_fetch_id, i.report_complete,
            -- Normalization tags a delivery with its instance in the transaction that writes
            -- its participant_events: this count moves whenever they do (report pages too).
            (SELECT count(*) || ':' || coalesce(max(id), 0) FROM raw_records WHERE meeting_uuid = i.instance_uuid),
            -- A registrant added or changed points at the page it came from, the newest record.
            (SELECT count(*) || ':' || coalesce(max(fetched_at), '') || ':' || coalesce(max(raw_id), 0)
                FROM registrants WHERE meeting_id = i.meeting_id)
        FROM instances i WHERE i.instance_uuid = ?
        """,
        [uuid],
    ).fetchone()
    if row is None:
        return None
    text = "\x1f".join("" if v is None else str(v) for v in (RULES_VERSION, *row))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_evidence(db: Store, uuid: str) -> Evidence | None:
    """Read one instance's evidence in one snapshot; None when the instance is unknown."""
    with read_snapshot(db):
        print_ = fingerprint(db, uuid)
        if print_ is None:
            return None
        inst = _dicts(db.execute("SELECT * FROM instances WHERE instance_uuid = ?", [uuid]))[0]
        complete = report_is_complete(inst)
        events = _dicts(
            db.execute(
                "SELECT event, user_id, participant_uuid, participant_user_id, registrant_id, email, user_name, "
                "join_time, leave_time, date_time, event_ts FROM participant_events WHERE instance_uuid = ?",
                [uuid],
            )
        )
        rows = (
            _dicts(
                db.execute(
                    "SELECT id, row_hash, user_id, participant_user_id, registrant_id, name, user_email, join_time, "
                    "leave_time, status FROM report_rows WHERE instance_uuid = ? AND fetch_id = ?",
                    [uuid, inst["report_fetch_id"]],
                )
            )
            if complete
            else []
        )
        registrants = (
            _dicts(
                db.execute(
                    "SELECT registrant_id, email, name, status FROM registrants WHERE meeting_id = ? ORDER BY registrant_id",
                    [inst.get("meeting_id")],
                )
            )
            if inst.get("meeting_id")
            else []
        )
        webhook_events = db.execute(
            "SELECT count(*) FROM raw_records WHERE meeting_uuid = ? AND source = 'webhook'", [uuid]
        ).fetchone()[0]
    return Evidence(inst, webhook_events, events, rows, registrants, print_)


def stored_fingerprint(db: Store, uuid: str) -> str | None:
    """The `evidence` fingerprint the instance's derived rows were computed from."""
    row = db.execute("SELECT evidence FROM attendance_instances WHERE instance_uuid = ?", [uuid]).fetchone()
    return row[0] if row else None


def is_current(db: Store, uuid: str) -> bool:
    """True when the derived rows of `uuid` match its evidence now."""
    stored = stored_fingerprint(db, uuid)
    return stored is not None and stored == fingerprint(db, uuid)


@contextmanager
def refresh_lock(db: Store, timeout: float = REFRESH_LOCK_TIMEOUT) -> Iterator[None]:
    """Held by whoever recomputes derived rows; separate from the write lock webhooks use."""
    with db.named_lock("derived").hold(timeout):
        yield


@dataclass
class RefreshStats:
    """What a refresh did, for logs and the benchmark."""

    instances: int = 0
    rows_written: int = 0
    transactions: int = 0
    longest_transaction: float = 0.0
    seconds: float = 0.0


def live_and_recent(db: Store, uuid: str, max_age: float) -> bool:
    row = db.execute(
        "SELECT r.refreshed_at FROM attendance_instances a JOIN derived_refreshes r USING (instance_uuid) "
        "WHERE a.instance_uuid = ? AND a.ended = 0 AND a.evidence IS NOT NULL",
        [uuid],
    ).fetchone()
    if row is None:
        return False
    return (datetime.now(UTC) - datetime.fromisoformat(row[0].replace("Z", "+00:00"))).total_seconds() < max_age


def clear_dirty(db: Store, uuid: str) -> None:
    if db.execute("SELECT 1 FROM derived_dirty WHERE instance_uuid = ?", [uuid]).fetchone():
        with durable_write(db) as conn:
            conn.execute("DELETE FROM derived_dirty WHERE instance_uuid = ?", (uuid,))


def dirty_instances(db: Store) -> list[str]:
    """Instances whose evidence changed since their last refresh (marked by triggers, m009)."""
    return [r[0] for r in db.execute("SELECT instance_uuid FROM derived_dirty ORDER BY instance_uuid")]


def stale_instances(db: Store, instance_uuids: Iterable[str] | None = None) -> list[str]:
    """Instances whose derived rows are missing or older than their evidence.

    Given uuids, each is checked against its evidence's fingerprint; without, every stored
    instance is checked in one query: no rows yet, being rewritten, or marked by the
    triggers of m009 (what any process stored since the last refresh).
    """
    if instance_uuids is not None:
        return [u for u in instance_uuids if not is_current(db, u)]
    return [
        r[0]
        for r in db.execute(
            "SELECT i.instance_uuid FROM instances i "
            "LEFT JOIN attendance_instances a ON a.instance_uuid = i.instance_uuid "
            "WHERE a.instance_uuid IS NULL OR a.evidence IS NULL "
            "UNION SELECT instance_uuid FROM derived_dirty ORDER BY 1"
        )
    ]


def _existing(db: Store, table: str, uuid: str) -> dict[tuple, tuple]:
    pk = TABLES[table]
    cursor = db.execute(f"SELECT * FROM {table} WHERE instance_uuid = ?", [uuid])
    names = [d[0] for d in cursor.description]
    index = [names.index(k) for k in pk]
    return {tuple(row[i] for i in index): row for row in cursor.fetchall()}


def _upsert_sql(table: str, columns: Sequence[str], pk: Sequence[str]) -> str:
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in pk)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(pk)}) DO UPDATE SET {updates}"
    )


def write_instance(db: Store, result: Any, print_: str, stats: RefreshStats, began: float) -> None:
    """Bring one instance's rows to `result` (an InstanceAttendance), writing only what changed, in short transactions."""
    uuid = result.instance["instance_uuid"]
    ops: list[tuple[str, tuple]] = []  # (sql, params), in an order foreign keys accept
    new_rows = {"people": result.people, "attendance": result.attendance, "attendance_sessions": result.sessions}
    upserts: dict[str, list[tuple[str, tuple]]] = {}
    for table, pk in reversed(TABLES.items()):  # children first: delete before their parents go
        old = _existing(db, table, uuid)
        rows = new_rows[table]
        sql = _upsert_sql(table, tuple(rows[0]), pk) if rows else ""
        keep = set()
        upserts[table] = []
        for row in rows:
            key = tuple(row[k] for k in pk)
            keep.add(key)
            values = tuple(row.values())
            if old.get(key) != values:
                upserts[table].append((sql, values))
        delete = f"DELETE FROM {table} WHERE {' AND '.join(f'{k} = ?' for k in pk)}"
        ops.extend((delete, key) for key in old if key not in keep)
    for table in TABLES:  # parents first: people before the rows that reference them
        ops.extend(upserts[table])

    instance_row = {**result.instance, "evidence": print_}
    instance_sql = _upsert_sql("attendance_instances", tuple(instance_row), ("instance_uuid",))
    if ops:
        # Mark the rows as being rewritten (readers refresh first), and make sure the parent exists.
        _run(db, [(instance_sql, tuple({**instance_row, "evidence": None}.values()))], stats)
        for i in range(0, len(ops), CHUNK_ROWS):
            _run(db, ops[i : i + CHUNK_ROWS], stats)
    refreshed = (
        "INSERT INTO derived_refreshes (instance_uuid, refreshed_at, seconds) VALUES (?, ?, ?) "
        "ON CONFLICT (instance_uuid) DO UPDATE SET refreshed_at = excluded.refreshed_at, seconds = excluded.seconds"
    )
    final = [(instance_sql, tuple(instance_row.values())), (refreshed, (uuid, utc_now(), time.perf_counter() - began))]
    _run(db, final, stats)


def _run(db: Store, ops: Sequence[tuple[str, tuple]], stats: RefreshStats) -> None:
    """One short durable transaction; consecutive statements with the same SQL are batched."""
    started = time.perf_counter()
    with durable_write(db) as conn:
        i = 0
        while i < len(ops):
            sql = ops[i][0]
            j = i
            while j < len(ops) and ops[j][0] == sql:
                j += 1
            conn.executemany(sql, [p for _, p in ops[i:j]])
            i = j
    elapsed = time.perf_counter() - started
    stats.transactions += 1
    stats.rows_written += len(ops)
    stats.longest_transaction = max(stats.longest_transaction, elapsed)


def drop_instances(db: Store, instance_uuids: Iterable[str], stats: RefreshStats | None = None) -> None:
    """Delete the derived rows of these instances, in short transactions."""
    stats = stats if stats is not None else RefreshStats()
    for uuid in sorted(set(instance_uuids)):
        for table, pk in (*reversed(TABLES.items()), ("attendance_instances", ("instance_uuid",))):
            key = ", ".join(pk)
            while True:
                started = time.perf_counter()
                with durable_write(db) as conn:
                    deleted = conn.execute(
                        f"DELETE FROM {table} WHERE ({key}) IN "
                        f"(SELECT {key} FROM {table} WHERE instance_uuid = ? LIMIT ?)",
                        (uuid, CHUNK_ROWS),
                    ).rowcount
                stats.transactions += 1
                stats.longest_transaction = max(stats.longest_transaction, time.perf_counter() - started)
                if deleted < CHUNK_ROWS:
                    break


def webhook_deliveries(
    db: Store, *, after_id: int, limit: int, instance_uuids: Sequence[str] | None = None
) -> list[tuple[int, bytes]]:
    """Stored webhook deliveries after `after_id` (of these instances only, when given), oldest first."""
    if instance_uuids is None:
        return db.execute(
            "SELECT id, body FROM raw_records WHERE id > ? AND source || '' = 'webhook' ORDER BY id LIMIT ?",
            [after_id, limit],
        ).fetchall()
    marks = ", ".join("?" * len(instance_uuids))
    return db.execute(
        f"SELECT id, body FROM raw_records WHERE source = 'webhook' AND meeting_uuid IN ({marks}) AND id > ? "
        "ORDER BY id LIMIT ?",
        [*instance_uuids, after_id, limit],
    ).fetchall()
