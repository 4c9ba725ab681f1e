"""The chain writer on PostgreSQL: moves webhook_intake rows into raw_records (issue 19).

The web processes run it after their answers (in a background thread every
WEBHOOK_IMPORT_DELAY_SECONDS, or at once at 0) and the worker's normalize job before it
normalizes; the write lock makes it one writer at a time across hosts."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from integrations.ingest.drain import Drainer
from integrations.ops.metrics import count_imported, event_label
from store.db import DatabaseUnavailable, PostgresStore
from store.intake import CHAIN_BATCH, chain_intake, intake_waiting

log = logging.getLogger(__name__)


def chain_waiting(db: PostgresStore, *, timeout: float | None = None) -> int:
    """Chain every delivery waiting in the intake now; how many were moved."""
    moved = 0
    # Bounded: rows that keep arriving meanwhile are the next round's.
    for _ in range(1000):
        if not intake_waiting(db):  # a read: no write lock when there is nothing to do
            break
        deliveries, records = chain_intake(db, timeout=timeout)
        if records:  # committed: count them (zoom_webhook_deliveries_total, issue 18)
            count_imported([event_label(d.body) for d in deliveries], [r.created for r in records])
        moved += len(records)
        if len(records) < CHAIN_BATCH:
            break
    return moved


class ChainWriter(Drainer):
    """One web process's runs of `chain_waiting` after its answers.

    With `delay_seconds` > 0 a background thread chains everything that arrived meanwhile
    once per delay (each run one transaction per CHAIN_BATCH rows, whichever process's
    they are); at 0 the answering thread chains at once. When the database refuses, the
    rows wait in the intake and the next round (or the worker) chains them.
    """

    thread_name = "intake-chain"

    def __init__(self, connect: Callable[[], PostgresStore], *, timeout: float, delay_seconds: float):
        super().__init__(delay_seconds=delay_seconds)
        self._connect = connect
        self.timeout = timeout
        self._failed = False
        self.chained = 0

    def _deferred(self) -> None:
        while not self._stopped.is_set():
            # Until something was committed; after a refusal, again within a second even
            # without new traffic (the rows committed before the outage wait meanwhile).
            self._wake.wait(timeout=1.0 if self._failed else None)
            self._wake.clear()
            if self._stopped.wait(self.delay_seconds):  # let the next batch gather
                return
            self.drain()

    def _at_exit(self) -> None:
        self._retry_after = 0.0
        super()._at_exit()

    def _run_once(self) -> None:
        if time.monotonic() < self._retry_after:
            return
        try:
            self.chained += chain_waiting(self._connect(), timeout=self.timeout)
            self._failed = False
        except DatabaseUnavailable as e:
            self._failed = True
            # The deliveries are committed in the intake; retry within a second.
            self._retry_after = time.monotonic() + 1.0
            log.warning("intake chaining postponed: %s", e)
