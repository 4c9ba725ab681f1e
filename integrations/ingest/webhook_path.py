"""How a webhook request stores its delivery (issue 6; PostgreSQL: issue 19).

Before the answer: this process's group commit appends it to its spool file and syncs
(SQLite), or commits it into webhook_intake (PostgreSQL). After the answer:
`after_response` has the waiting deliveries moved into raw_records."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from integrations.config import Config
from integrations.ingest.group_commit import BoundedCommit, GroupCommit
from integrations.ingest.intake import ChainWriter
from integrations.ingest.spool import Importer, SpoolWriter, encode, spool_dir
from store.db import PerProcess, PostgresStore, thread_db
from store.evidence import Delivery, utc_now
from store.intake import insert_intake, open_intake_pool
from store.postgres import is_postgres_url


@dataclass
class Ingest:
    """One process's spool writer, group commit and importer for one database."""

    writer: SpoolWriter
    group: GroupCommit
    importer: Importer

    def after_response(self) -> None:
        """See `after_response`."""
        self.importer.kick()


@dataclass
class IntakeIngest:
    """One process's group commit into webhook_intake and its chain writer (PostgreSQL)."""

    group: GroupCommit
    chainer: ChainWriter
    pool: ConnectionPool

    def after_response(self) -> None:
        """See `after_response`."""
        self.chainer.kick()

    def close(self) -> None:
        """Stop the chain writer's thread and close the pool (tests; a web process just exits)."""
        self.chainer.stop()
        self.pool.close()


# The URL path Zoom posts to (the banner prints it; integrations/web/webhooks.py answers it).
WEBHOOK_PATH = "/webhooks/zoom"
IMPORT_CHECKPOINT_PAGES = 10_000
IMPORT_CACHE_KIB = 64 * 1024
_ingests: PerProcess[Ingest | IntakeIngest] = PerProcess()


def ingest(config: Config) -> Ingest | IntakeIngest:
    """This process's Ingest for the configured database (a forked worker gets its own)."""
    make = _new_intake_ingest if is_postgres_url(config.database_path) else _new_ingest
    return _ingests.get(config.database_path, lambda: make(config))


def _new_intake_ingest(config: Config) -> IntakeIngest:
    timeout = config.db_lock_timeout_seconds
    # Made in the process that answers (after gunicorn's fork): a pool never crosses a fork.
    pool = open_intake_pool(config.database_path, timeout=timeout)

    def commit(deliveries: list[Delivery]) -> None:
        insert_intake(pool, deliveries, utc_now())

    def connect() -> PostgresStore:
        # A session per thread, reconnected by the store when the server dropped it.
        db = thread_db(config.database_path, lock_timeout=timeout)
        assert isinstance(db, PostgresStore)
        return db

    return IntakeIngest(
        # Bounded: a server that stops answering gets a 503 in time, not a hung request.
        GroupCommit(BoundedCommit(commit, timeout=timeout), timeout=timeout),
        # A short lock wait per run, as the spool importer's: a long holder only postpones it.
        ChainWriter(connect, timeout=min(0.5, timeout), delay_seconds=config.webhook_import_delay_seconds),
        pool,
    )


def _new_ingest(config: Config) -> Ingest:
    writer = SpoolWriter(spool_dir(config.database_path))

    def commit(deliveries: list[Delivery]) -> None:
        received_at = utc_now()
        writer.append(b"".join([encode(d, received_at) for d in deliveries]))

    def connect():
        db = thread_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
        # Checkpoint every ~40 MB of WAL instead of SQLite's 4 MB: an import writes whole
        # batches, and fewer, larger checkpoints cost a fifth less per record (bench/README.md).
        db.execute(f"PRAGMA wal_autocheckpoint = {IMPORT_CHECKPOINT_PAGES}")
        # Room for the SHA-256 index's pages: the importer is the only web process that
        # writes, so what it read for the last import is still valid for the next.
        db.execute(f"PRAGMA cache_size = -{IMPORT_CACHE_KIB}")
        return db

    return Ingest(
        writer,
        GroupCommit(commit, timeout=config.db_lock_timeout_seconds),
        # A short lock wait per import: a long lock holder only postpones the import (it
        # is retried a second later), and with the delay at 0 it is paid by a request
        # thread whose answer is already sent, before that thread's next request.
        Importer(
            connect,
            writer,
            timeout=min(0.5, config.db_lock_timeout_seconds),
            delay_seconds=config.webhook_import_delay_seconds,
        ),
    )


def store_webhook(delivery: Delivery, config: Config) -> None:
    """Make `delivery` durable; raises DatabaseUnavailable when it cannot be stored now."""
    ingest(config).group.store(delivery)


def after_response(config: Config) -> None:
    """Move what this process spooled into raw_records: called once the answer is sent.

    With WEBHOOK_IMPORT_DELAY_SECONDS > 0 (the default) a background thread does it within
    that delay, for everything that arrived meanwhile in one transaction; at 0, this thread
    does it now.
    """
    ingest(config).after_response()
