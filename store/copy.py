"""Copy a whole database from one store to another (SQLite <-> PostgreSQL): `worker.py copy-db`.

The source is read in one snapshot (a live service may keep writing to it) and never written;
the target is filled in one transaction, table by table in batches, ids and chain hashes as
they are, so `verify` on the target ends at the source's head (docs/scaling.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from store.db import Store, durable_write, read_snapshot

BATCH_ROWS = 2000  # rows per read and per insert: a batch of webhook bodies stays a few MB
# Triggers fill this table while others are copied (a new instance or registrant marks its
# instance dirty): it is emptied again and copied after every other table.
WRITTEN_BY_TRIGGERS = ("derived_dirty",)
# Writing a whole webinar's evidence takes a while: the target is not in service yet.
COPY_LOCK_TIMEOUT = 60.0

Progress = Callable[[str, int, int], None]  # table, rows copied so far, rows in the table


class CopyError(Exception):
    "The database cannot be copied to that target"


@dataclass(frozen=True)
class SourceHead:
    """The source's raw_records chain as the snapshot saw it."""

    count: int
    record_id: int | None
    chain_hash: str | None


def copy_order(tables: list[str]) -> list[str]:
    """Tables in the order they are copied: those that triggers write to come last."""
    return sorted(tables, key=lambda t: (t in WRITTEN_BY_TRIGGERS, t))


def raw_record_count(db: Store) -> int:
    """How many raw records (evidence) the database holds."""
    return int(db.execute("SELECT count(*) FROM raw_records").fetchone()[0])


def _columns(source: Store, target: Store, table: str) -> list[str]:
    """The columns to copy: the source's, every one of which the target must have."""
    columns = source.table_columns(table)
    missing = [c for c in columns if c not in target.table_columns(table)]
    if missing:
        raise CopyError(
            f"target table {table} has no column {', '.join(missing)}: are both databases at the same version?"
        )
    return columns


def _plan(source: Store, target: Store) -> list[tuple[str, list[str]]]:
    """(table, columns) for every source table, checked against the target's schema."""
    target_tables = set(target.data_tables())
    plan = []
    for table in copy_order(source.data_tables()):
        if table not in target_tables:
            rows = int(source.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            if rows:
                raise CopyError(f"source table {table} holds {rows} rows and the target has no such table")
            continue  # e.g. PostgreSQL's webhook_intake, empty once the worker has chained it
        plan.append((table, _columns(source, target, table)))
    return plan


def source_head(db: Store) -> SourceHead:
    """The chain head of `db` (in its open snapshot): record count, last id and its chain hash."""
    count, last = db.execute("SELECT count(*), max(id) FROM raw_records").fetchone()
    if not last:
        return SourceHead(0, None, None)
    chain = db.execute("SELECT chain_hash FROM raw_records WHERE id = ?", [last]).fetchone()[0]
    return SourceHead(int(count), int(last), chain)


def copy_database(
    source: Store, target: Store, *, batch_rows: int = BATCH_ROWS, progress: Progress | None = None
) -> SourceHead:
    """Copy every row of every table of `source` into `target` (migrated, without raw records).

    One snapshot of the source, one transaction on the target: a failure leaves the target
    as it was. Rows the target had in other tables (a fresh migration's) are replaced.
    Raises CopyError when the target holds evidence already or its schema differs.
    """
    with read_snapshot(source):
        head = source_head(source)
        plan = _plan(source, target)
        totals = {table: int(source.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]) for table, _ in plan}
        with durable_write(target, timeout=COPY_LOCK_TIMEOUT) as conn:
            # Checked under the target's write lock: no writer can add evidence meanwhile.
            existing = raw_record_count(target)
            if existing:
                raise CopyError(
                    f"target already holds {existing} raw records: copy-db fills only an empty or freshly migrated database"
                )
            target.defer_foreign_keys(conn)
            for table, _ in plan:
                conn.execute(f'DELETE FROM "{table}"')
            for table, columns in plan:
                if table in WRITTEN_BY_TRIGGERS:
                    conn.execute(f'DELETE FROM "{table}"')
                names = ", ".join(f'"{c}"' for c in columns)
                copied = 0
                for batch in source.stream(f'SELECT {names} FROM "{table}"', batch_rows):
                    target.insert_rows(conn, table, columns, batch)
                    copied += len(batch)
                    if progress:
                        progress(table, copied, totals[table])
                if not copied and progress:
                    progress(table, 0, 0)
                target.after_insert_rows(conn, table)
    return head
