"""Which worker process runs the scheduled jobs when several share one database (issue 19).

The leader holds the store's leader lock (PostgreSQL: a session advisory lock on a connection
of its own; SQLite: a lock file). The others try again every LEADER_RETRY_SECONDS and one of
them takes over when the leader's session ends. docs/scaling.md describes the failure cases."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from store.db import DatabaseUnavailable, Store, durable_write
from store.events import set_state
from store.postgres import redact

log = logging.getLogger(__name__)

LEADER_STATE = "worker_leader"  # state row: who leads the jobs, and since when (GET /healthz)
LOCK_NAME = "scheduled-jobs"


class LeaderLock(Protocol):
    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


def worker_identity() -> str:
    """This worker as operators find it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Whether this worker leads; `check` takes the lead when it is free and notices its loss."""

    def __init__(self, db: Store, *, identity: str | None = None, now: Callable[[], datetime] | None = None):
        self.db = db
        self.lock: LeaderLock = db.leader_lock(LOCK_NAME)
        self.identity = identity or worker_identity()
        self.now = now or (lambda: datetime.now(UTC))
        self._leading = threading.Event()
        self._followed = False
        self._recorded = False
        self._since = self.now()

    @property
    def leading(self) -> bool:
        """True while this worker holds the lead."""
        return self._leading.is_set()

    def check(self) -> bool:
        """Take the lead if it is free, or confirm this worker still holds it; True while leading."""
        held = self.lock.try_acquire()
        if held and not self.leading:
            self._leading.set()
            self._recorded = False
            log.info("worker %s leads the scheduled jobs", self.identity)
            self._since = self.now()
            self._record()
        elif held and not self._recorded:  # the database refused the record last time: again
            self._record()
        elif not held and self.leading:
            self._leading.clear()
            log.warning("worker %s lost the lead (database session ended): stops the scheduled jobs", self.identity)
        elif not held and not self._followed:
            self._followed = True
            log.info("worker %s stands by: another worker holds the lead", self.identity)
        return held

    def _record(self) -> None:
        """Write who leads where /healthz reads it; a database that cannot take it now is only logged."""
        try:
            with durable_write(self.db) as conn:
                set_state(conn, LEADER_STATE, f"{self.identity} since {self._since.strftime('%Y-%m-%dT%H:%M:%SZ')}")
            self._recorded = True
        except DatabaseUnavailable as e:  # the lead holds without the record; the next check retries
            log.warning("could not record the leader in %s: %s", redact(self.db.path), e)

    def release(self) -> None:
        """Give the lead up (a worker stopping): another takes over at its next try."""
        if self.leading:
            log.info("worker %s gives up the lead", self.identity)
        self._leading.clear()
        self.lock.release()


def leader_only(job: Callable[..., Any], leadership: Leadership) -> Callable[..., None]:
    """`job`, run only while this worker leads."""

    def run(*args: Any, **kwargs: Any) -> None:
        if leadership.leading:
            job(*args, **kwargs)

    run.__name__ = run.__qualname__ = getattr(job, "__name__", type(job).__name__)
    return run
