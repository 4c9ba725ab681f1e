"""Group commit inside one process: concurrent request threads share a transaction and
an fsync.

Each thread queues its delivery. A thread that finds no commit in progress becomes the
leader: it takes everything queued, appends it in one `durable_write` (one commit, one
fdatasync of the WAL), hands every thread its result, and passes the lead to the first
thread that queued meanwhile. Deliveries that arrive while a sync runs form the next
batch, so the busier the endpoint the more requests share each fsync; a thread is
answered only after the sync that covers its row, as with `store_delivery`. Across
processes the write lock serializes the leaders (store/db.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

import sqlite_utils

from store.db import DatabaseUnavailable, durable_write
from store.evidence import Delivery, StoredRecord, append_deliveries

log = logging.getLogger(__name__)


class _Waiter:
    __slots__ = ("delivery", "deadline", "wake", "result", "error", "lead")

    def __init__(self, delivery: Delivery, deadline: float):
        self.delivery = delivery
        self.deadline = deadline
        # Held until the leader releases it: a bare lock wakes a thread for a fraction of
        # what threading.Event costs, and the leader wakes one per delivery (issue 6).
        self.wake = threading.Lock()
        self.wake.acquire()
        self.result: StoredRecord | None = None
        self.error: BaseException | None = None
        self.lead = False

    def set(self) -> None:
        if self.wake.locked():
            self.wake.release()


class GroupCommit:
    """Store deliveries durably, sharing commits and fsyncs among this process's threads.

    `timeout` bounds each delivery's wait for the write lock, counted from its arrival,
    however many batches are ahead of it (Zoom gives up after 3 s: issue 7).
    """

    MAX_BATCH = 512  # deliveries per transaction, so the write lock is never held long
    # Deliveries (a WAL page or two each) between this process's checkpoints; 0 leaves
    # checkpoints to SQLite. Below SQLite's 1,000 pages, so other writers seldom need one.
    CHECKPOINT_EVERY = 250

    def __init__(self, connect: Callable[[], sqlite_utils.Database], *, timeout: float):
        self._connect = connect
        self.timeout = timeout
        self._guard = threading.Lock()
        self._queue: list[_Waiter] = []
        self._leading = False
        # ids of connections whose automatic checkpoint is off (thread_db keeps them alive)
        self._configured: set[int] = set()
        self._checkpointed = 0  # `stored` at the last checkpoint
        self.batches = self.stored = 0

    def store(self, delivery: Delivery) -> StoredRecord:
        """Store `delivery`: on disk when this returns; DatabaseUnavailable if it cannot be."""
        me = _Waiter(delivery, time.monotonic() + self.timeout)
        with self._guard:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            self._follow(me)
        led = False
        while me.result is None and me.error is None:
            self._lead_one_batch()
            led = True
        if led and self._checkpoint_due():
            self._checkpoint()
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _follow(self, me: _Waiter) -> None:
        """Wait until our batch is done or the lead passes to us."""
        # The batch ahead ends within its lock bound plus a sync; a queued waiter whose
        # deadline passed leaves the queue itself, unstored (its 503 is the truth).
        while not me.wake.acquire(timeout=max(0.01, me.deadline - time.monotonic()) + 1.0):
            with self._guard:
                if me in self._queue and not me.lead:
                    self._queue.remove(me)
                    me.error = DatabaseUnavailable(f"database write not done within {self.timeout:g}s")
                    return

    def _lead_one_batch(self) -> None:
        with self._guard:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            now = time.monotonic()
            for waiter in batch:
                if waiter.deadline <= now:
                    waiter.error = DatabaseUnavailable(f"database write lock not acquired within {self.timeout:g}s")
            live = [w for w in batch if w.error is None]
            if live:
                self._commit(live, budget=min(w.deadline for w in live) - now)
        except BaseException as e:  # every waiter of the batch gets the error (a 503)
            for waiter in batch:
                if waiter.result is None and waiter.error is None:
                    waiter.error = e if isinstance(e, Exception) else DatabaseUnavailable(repr(e))
            if not isinstance(e, Exception):
                raise
        finally:
            for waiter in batch:
                waiter.set()
            with self._guard:
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            if successor is not None:
                successor.set()

    def _commit(self, batch: list[_Waiter], *, budget: float) -> None:
        # The leader's own connection (the app's, for this thread), and a lock wait only
        # as long as the batch's earliest arrival may still wait.
        db = self._connect()
        if self.CHECKPOINT_EVERY and id(db) not in self._configured:
            db.execute("PRAGMA wal_autocheckpoint = 0")  # ours run outside the lock: _checkpoint
            self._configured.add(id(db))
        with durable_write(db, timeout=budget) as conn:
            records = append_deliveries(conn, [w.delivery for w in batch])
        for waiter, record in zip(batch, records, strict=True):
            waiter.result = record
        self.batches += 1
        self.stored += len(batch)

    def _checkpoint_due(self) -> bool:
        with self._guard:
            if not self.CHECKPOINT_EVERY or self.stored - self._checkpointed < self.CHECKPOINT_EVERY:
                return False
            self._checkpointed = self.stored
            return True

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, outside the write lock.

        SQLite's automatic checkpoint runs inside a COMMIT, under the lock every writer
        waits for, and syncs the WAL and the database file there: a stall of every webhook
        each thousand pages. This one runs after the leader has handed on the lead (and
        answered its batch); other threads and processes go on committing meanwhile
        (PASSIVE never waits). In NORMAL mode a checkpoint syncs the WAL before copying
        and the database after, so every frame stays durable somewhere.
        """
        try:
            self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as e:  # nothing is lost: the WAL just stays longer
            log.warning("WAL checkpoint failed: %s", e)
