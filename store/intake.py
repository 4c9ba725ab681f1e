"""The webhook intake on PostgreSQL: where a delivery is durable before its answer.

Each web process commits its deliveries into `webhook_intake` (one INSERT per batch,
deduplicated by SHA-256 of the body); the chain writer moves them into raw_records and
deletes them in one transaction under the write lock, so the chain has one order."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from store.db import PostgresStore, durable_write, insert_sql
from store.errors import DatabaseUnavailable
from store.evidence import Delivery, StoredRecord, append_deliveries, content_hash
from store.postgres import CONNECT_TIMEOUT_SECONDS, is_unavailable, redact, translate

_COLUMNS = (
    "sha256",
    "received_at",
    "body",
    "zm_request_timestamp",
    "zm_signature",
    "zm_request_id",
    "zm_trackingid",
    "stale_timestamp",
)
# Bounded per process: the group commit holds one connection at a time; one spare replaces
# a connection found broken while the pool reconnects in the background.
POOL_MAX_SIZE = 2
# How long the pool keeps retrying one reconnection (with growing pauses) before it gives
# up and lets the next request start a fresh attempt at once: after the server comes back,
# a web process stores again within about this long (issue 19).
POOL_RECONNECT_SECONDS = 3.0
CHAIN_BATCH = 2000  # intake rows chained per transaction: the write lock is held briefly


def open_intake_pool(url: str, *, timeout: float) -> ConnectionPool:
    """A small pool of synchronous-commit connections to `url`, checked before each use.

    `timeout` bounds the wait for a connection (then DatabaseUnavailable: a 503). The pool
    connects in the background, so a server that is down does not stop the process.
    """

    def configure(conn: psycopg.Connection) -> None:
        # A 2xx promises the delivery survives a crash of the server, whatever its default.
        conn.execute("SET synchronous_commit = on")
        conn.execute(f"SET statement_timeout = {max(1, int(timeout * 1000))}")

    return ConnectionPool(
        url,
        kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_SECONDS},
        min_size=1,
        max_size=POOL_MAX_SIZE,
        open=True,
        configure=configure,
        # A restarted server left broken connections behind: each is found here and replaced.
        check=ConnectionPool.check_connection,
        timeout=timeout,
        reconnect_timeout=POOL_RECONNECT_SECONDS,
        name=f"webhook-intake {redact(url)}",
    )


@functools.lru_cache(maxsize=16)
def _insert_sql(count: int) -> str:
    return translate(insert_sql("webhook_intake", _COLUMNS, count, "ON CONFLICT (sha256) DO NOTHING"))


def intake_rows(deliveries: Sequence[Delivery], received_at: str) -> list[Any]:
    """The bound values of `deliveries` for one INSERT, without repeats of one body."""
    seen: set[str] = set()
    values: list[Any] = []
    for d in deliveries:
        sha256 = content_hash(d.body)
        if sha256 in seen:  # ON CONFLICT cannot settle two rows of one statement with one key
            continue
        seen.add(sha256)
        values.extend((sha256, d.received_at or received_at, d.body, d.timestamp, d.signature))
        values.extend((d.request_id, d.tracking_id, int(d.stale_timestamp)))
    return values


def insert_intake(pool: ConnectionPool, deliveries: Sequence[Delivery], received_at: str) -> None:
    """Commit `deliveries` into webhook_intake in one transaction (synchronous commit).

    A body already waiting there is not stored twice. Raises DatabaseUnavailable when the
    server cannot take them now (down, restarting, too slow).
    """
    values = intake_rows(deliveries, received_at)
    try:
        with pool.connection() as conn:
            # Autocommit: the one statement is the transaction, committed when it returns.
            conn.execute(_insert_sql(len(values) // len(_COLUMNS)), values)
    except PoolTimeout as e:
        raise DatabaseUnavailable(f"no database connection: {e}") from e
    except psycopg.Error as e:
        if is_unavailable(e):
            raise DatabaseUnavailable(str(e).strip()) from e
        raise


def chain_intake(
    db: PostgresStore, *, limit: int = CHAIN_BATCH, timeout: float | None = None
) -> tuple[list[Delivery], list[StoredRecord]]:
    """Move up to `limit` intake rows, oldest first, into raw_records; the deliveries moved
    and their records.

    One transaction under the write lock: the rows get their ids and chain hashes
    (`append_deliveries`: redeliveries of a chained body come back `created=False`) and
    leave the intake together, so a crash leaves each row in exactly one of the two.
    """
    with durable_write(db, timeout=timeout) as conn:
        rows = conn.execute(
            f"SELECT id, {', '.join(_COLUMNS)} FROM webhook_intake ORDER BY id LIMIT ?", [limit]
        ).fetchall()
        if not rows:
            return [], []
        deliveries = [
            Delivery(bytes(body), ts, sig, request_id, tracking_id, bool(stale), received_at)
            for _, _, received_at, body, ts, sig, request_id, tracking_id, stale in rows
        ]
        records = append_deliveries(conn, deliveries)
        conn.execute("DELETE FROM webhook_intake WHERE id = ANY(?)", [[row[0] for row in rows]])
    return deliveries, records


def intake_waiting(db: PostgresStore) -> bool:
    """True when any delivery waits in the intake (a read: no lock)."""
    return db.execute("SELECT EXISTS (SELECT 1 FROM webhook_intake)").fetchone()[0]


def intake_status(db: PostgresStore) -> tuple[int, str | None]:
    """(deliveries waiting in the intake, received_at of the oldest or None)."""
    count, oldest = db.execute("SELECT count(*), min(received_at) FROM webhook_intake").fetchone()
    return int(count), oldest
