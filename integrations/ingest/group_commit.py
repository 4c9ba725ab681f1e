"""Group commit inside one process: concurrent request threads share one write and one sync.

A thread that finds no commit in progress leads: it commits everything queued in one call
and hands the lead on; each thread returns only after the sync covering its delivery."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from store.db import DatabaseUnavailable
from store.evidence import Delivery


class _Waiter:
    __slots__ = ("delivery", "deadline", "wake", "done", "error", "lead")

    def __init__(self, delivery: Delivery, deadline: float):
        self.delivery = delivery
        self.deadline = deadline
        # Held until the leader releases it: a bare lock wakes a thread for a fraction of
        # what threading.Event costs, and the leader wakes one per delivery (issue 6).
        self.wake = threading.Lock()
        self.wake.acquire()
        self.done = False
        self.error: BaseException | None = None
        self.lead = False

    def set(self) -> None:
        if self.wake.locked():
            self.wake.release()


class GroupCommit:
    """Make deliveries durable through `commit`, one call per batch of concurrent deliveries.

    `commit(deliveries)` returns once all are durable or raises; DatabaseUnavailable (or an
    OSError, turned into one) means "answer 503". `timeout` bounds each delivery's wait,
    counted from its arrival, however many batches are ahead of it (Zoom gives up after 3 s).
    """

    MAX_BATCH = 512  # deliveries per commit call

    def __init__(self, commit: Callable[[list[Delivery]], None], *, timeout: float):
        self._commit = commit
        self.timeout = timeout
        self._guard = threading.Lock()
        self._queue: list[_Waiter] = []
        self._leading = False
        self.batches = self.stored = 0

    def store(self, delivery: Delivery) -> None:
        """Make `delivery` durable: on disk when this returns; DatabaseUnavailable if it cannot be."""
        me = _Waiter(delivery, time.monotonic() + self.timeout)
        with self._guard:
            self._queue.append(me)
            lead = not self._leading
            self._leading = True
        if not lead:
            self._follow(me)
        while not me.done and me.error is None:
            self._lead_one_batch()
        if me.error is not None:
            raise me.error

    def _follow(self, me: _Waiter) -> None:
        """Wait until our batch is done or the lead passes to us."""
        # The batch ahead ends within a sync; a queued waiter whose deadline passed leaves
        # the queue itself, unstored (its 503 is the truth).
        while not me.wake.acquire(timeout=max(0.01, me.deadline - time.monotonic())):
            with self._guard:
                if me in self._queue and not me.lead:
                    self._queue.remove(me)
                    me.error = DatabaseUnavailable(f"delivery not stored within {self.timeout:g}s")
                    return

    def _lead_one_batch(self) -> None:
        with self._guard:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            now = time.monotonic()
            for waiter in batch:
                if waiter.deadline <= now:
                    waiter.error = DatabaseUnavailable(f"delivery not stored within {self.timeout:g}s")
            live = [w for w in batch if w.error is None]
            if live:
                try:
                    self._commit([w.delivery for w in live])
                except OSError as e:  # disk full, file too large, I/O error: Zoom retries a 503
                    raise DatabaseUnavailable(f"delivery could not be written: {e}") from e
                for waiter in live:
                    waiter.done = True
                self.batches += 1
                self.stored += len(live)
        except BaseException as e:  # every waiter of the batch gets the error (a 503)
            for waiter in batch:
                if not waiter.done and waiter.error is None:
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


class BoundedCommit:
    """`commit` run on a thread of its own, so a request waits at most `timeout` for it.

    A database server that stops answering without an error (a frozen host, a network cut
    that drops packets) would hold the request past Zoom's 3 s. The caller gets
    DatabaseUnavailable (a 503) instead; the commit may still land later, and Zoom's retry
    of it is then deduplicated by its body.
    """

    def __init__(self, commit: Callable[[list[Delivery]], None], *, timeout: float):
        self._commit = commit
        self.timeout = timeout
        self._calls: queue.SimpleQueue[tuple[list[Delivery], Future[None]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    def __call__(self, deliveries: list[Delivery]) -> None:
        with self._guard:
            if self._thread is None or not self._thread.is_alive():
                # A daemon: a process that exits does not wait for a server that never answers.
                self._thread = threading.Thread(target=self._run, name="bounded-commit", daemon=True)
                self._thread.start()
        done: Future[None] = Future()
        self._calls.put((deliveries, done))
        try:
            done.result(timeout=self.timeout)
        except FutureTimeout:
            raise DatabaseUnavailable(f"the database did not answer within {self.timeout:g}s") from None

    def _run(self) -> None:
        while True:
            deliveries, done = self._calls.get()
            if not done.set_running_or_notify_cancel():
                continue
            try:
                self._commit(deliveries)
            except BaseException as e:  # handed to the waiting request (a 503)
                done.set_exception(e)
            else:
                done.set_result(None)
