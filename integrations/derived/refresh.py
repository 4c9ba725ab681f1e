"""Refreshing the derived attendance tables: evidence in, the rules applied, changed rows out.

The SQL is in store/derived.py and the rules in integrations/attendance/; this module joins
them, and paces the worker's refreshes (`RefreshPacer`). docs/architecture.md says why.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable

from integrations.attendance.compute import InstanceAttendance, InstanceFacts, compute_attendance
from integrations.attendance.intervals import epoch_seconds
from integrations.attendance.segments import report_segments, webhook_segments
from integrations.ops.metrics import metrics, safely
from store.db import DatabaseUnavailable, Store
from store.derived import (
    REFRESH_LOCK_TIMEOUT,
    Evidence,
    RefreshStats,
    clear_dirty,
    dirty_instances,
    drop_instances,
    is_current,
    live_and_recent,
    load_evidence,
    refresh_lock,
    report_is_complete,
    write_instance,
)

log = logging.getLogger(__name__)


def _seconds_or_none(value: str | None) -> int | None:
    try:
        return epoch_seconds(value) if value else None
    except (ValueError, OverflowError):
        return None


def instance_facts(evidence: Evidence) -> InstanceFacts:
    """What the stored instance row says, as the rules want it."""
    inst = evidence.instance
    return InstanceFacts(
        instance_uuid=inst["instance_uuid"],
        meeting_id=inst.get("meeting_id"),
        kind=inst.get("kind"),
        topic=inst.get("topic"),
        # Issue 4: the window starts at the started event, ends at the ended event.
        started_at=_seconds_or_none(inst.get("start_time")) if inst.get("started_event_ts") is not None else None,
        ended_at=_seconds_or_none(inst.get("end_time")) if inst.get("ended_event_ts") is not None else None,
        report_complete=report_is_complete(inst),
        webhook_events=evidence.webhook_events,
        report_rows=len(evidence.report_rows),
    )


def compute(evidence: Evidence) -> InstanceAttendance:
    """The derived rows of one instance, by the one implementation of the rules.

    Consumes `evidence.events` and `evidence.report_rows`: the rows of a 20,000-person
    webinar are freed once they are segments, before the result rows are built.
    """
    facts = instance_facts(evidence)
    webhook = webhook_segments(evidence.events)
    report = report_segments(evidence.report_rows)
    evidence.events, evidence.report_rows = [], []
    return compute_attendance(facts, webhook, report, evidence.registrants)


def refresh_instances(
    db: Store,
    instance_uuids: Iterable[str],
    *,
    force: bool = False,
    live_max_age: float | None = None,
    lock_timeout: float = REFRESH_LOCK_TIMEOUT,
    stats: RefreshStats | None = None,
) -> list[str]:
    """Recompute the derived tables of these instances from the evidence; returns those rewritten.

    Instances whose rows already match their evidence are skipped unless `force`; with
    `live_max_age`, so are live instances refreshed less than that many seconds ago (a
    reader of a busy live webinar takes the worker's last refresh instead of redoing it).
    Raises DatabaseUnavailable when the refresh lock or the write lock is not had in time.
    """
    stats = stats if stats is not None else RefreshStats()
    started = time.perf_counter()
    done = []
    with refresh_lock(db, lock_timeout):
        for uuid in sorted(set(instance_uuids)):
            if not force and live_max_age is not None and live_and_recent(db, uuid, live_max_age):
                continue
            clear_dirty(db, uuid)  # before reading: evidence stored from now on marks it again
            if not force and is_current(db, uuid):
                continue
            began = time.perf_counter()
            evidence = load_evidence(db, uuid)
            if evidence is None:
                continue
            write_instance(db, compute(evidence), evidence.fingerprint, stats, began)
            took = time.perf_counter() - began
            safely(functools.partial(metrics().refresh_seconds.observe, took))
            stats.instances += 1
            done.append(uuid)
    stats.seconds += time.perf_counter() - started
    return done


def rebuild(db: Store, instance_uuids: Iterable[str] | None = None, stats: RefreshStats | None = None) -> list[str]:
    """Drop and recompute the derived rows of these instances (all when None) from the evidence."""
    stats = stats if stats is not None else RefreshStats()
    with refresh_lock(db):
        if instance_uuids is None:
            known = [r[0] for r in db.execute("SELECT instance_uuid FROM attendance_instances")]
            instance_uuids = [r[0] for r in db.execute("SELECT instance_uuid FROM instances")]
            drop_instances(db, set(known) | set(instance_uuids), stats)
        else:
            instance_uuids = list(instance_uuids)
            drop_instances(db, instance_uuids, stats)
    return refresh_instances(db, instance_uuids, force=True, stats=stats)


class RefreshPacer:
    """When the worker refreshes each instance: at once, unless its last refresh was costly.

    An instance whose refresh took `c` seconds waits `c / share` seconds from the start of
    that refresh before the next, so a 20,000-person webinar never takes more than `share`
    of the worker's time while its own tables still lag its deliveries by seconds.
    Instances that could not be refreshed (lock busy) stay pending for the next call, and so
    do those left when a call has used its `budget` seconds (after an upgrade marks every
    stored instance, normalization must not wait for all of them).
    """

    def __init__(self, share: float = 0.25, lock_timeout: float = 0.5, budget: float = 5.0, clock=time.monotonic):
        self.share = share
        self.lock_timeout = lock_timeout
        self.budget = budget
        self.clock = clock
        self.pending: set[str] = set()
        self.not_before: dict[str, float] = {}

    def run(self, db: Store, affected: Iterable[str]) -> list[str]:
        """Refresh what is due among `affected` and what was left pending; returns those refreshed."""
        self.pending.update(affected)
        self.pending.update(dirty_instances(db))  # changed by another process (CLI, API, poller)
        done: list[str] = []
        run_start = None
        for uuid in sorted(self.pending):
            started = self.clock()
            run_start = started if run_start is None else run_start
            if started - run_start > self.budget:
                break
            if self.not_before.get(uuid, 0.0) > started:
                continue
            try:
                refresh_instances(db, [uuid], lock_timeout=self.lock_timeout)
            except DatabaseUnavailable:
                raise  # stays pending; the caller logs that the refresh was postponed
            except Exception:
                # A bug must not block every other instance behind this one, run after run.
                log.exception("could not refresh the derived attendance of %s", uuid)
                self.pending.discard(uuid)
                continue
            self.pending.discard(uuid)
            self.not_before[uuid] = started + (self.clock() - started) / self.share
            done.append(uuid)
        if len(self.not_before) > 10_000:  # forget instances long since refreshed
            now = self.clock()
            self.not_before = {u: t for u, t in self.not_before.items() if t > now}
        return done


worker_pacer = RefreshPacer()
