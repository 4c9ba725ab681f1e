"""The worker process: APScheduler 3.x jobs, run by `python worker.py schedule`.

Jobs run here and never inside gunicorn workers, where every worker would run each job.
Several workers may share one PostgreSQL database: only the elected leader runs the jobs
(integrations/jobs/leadership.py), the others stand by.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler

from integrations.config import Config
from integrations.derived.refresh import worker_pacer
from integrations.ingest.normalize import normalize_pending
from integrations.jobs.leadership import Leadership, leader_only
from integrations.ops.alerts import AlertChecker
from integrations.ops.multiprocess import prepare_process
from integrations.reports.sync import POLL_INTERVAL_SECONDS, ReportPoller
from store.db import DatabaseUnavailable, open_db
from store.migrations import migrate

log = logging.getLogger(__name__)


def normalize_job(config: Config) -> None:
    """Normalize new webhook deliveries (and refresh what depends on them)."""
    try:
        # Opening is inside: a database server that is down is a WARNING, not a traceback a second.
        db = open_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
    except DatabaseUnavailable as e:
        log.warning("normalization postponed, database unavailable: %s", e)
        return
    try:
        affected = normalize_pending(db)
        if affected:
            log.debug("normalized deliveries for %d instance(s)", len(affected))
        # Issue 8: derived attendance tables of changed instances; costly ones are paced.
        worker_pacer.run(db, affected)
    except DatabaseUnavailable as e:
        log.warning("normalization postponed, database unavailable: %s", e)
    finally:
        db.close()


def add_jobs(scheduler: BaseScheduler, config: Config, leadership: Leadership | None = None) -> None:
    """Register every recurring job on `scheduler`; with `leadership`, they run only while it leads."""

    def every(seconds: float, job, job_id: str, **options) -> None:
        # One run at a time, and a run missed while the last one ran is not run twice.
        scheduler.add_job(
            job,
            "interval",
            seconds=seconds,
            id=job_id,
            max_instances=1,
            coalesce=True,
            replace_existing=True,
            **options,
        )

    def once(job):
        return job if leadership is None else leader_only(job, leadership)

    if leadership is not None:
        every(config.leader_retry_seconds, leadership.check, "leadership")
    # Issue 18: the alerts a one-machine setup gets without Prometheus.
    every(config.alert_check_interval_seconds, once(AlertChecker(config)), "alerts")
    every(config.normalize_interval_seconds, once(normalize_job), "normalize", args=[config])
    # Report polling (issue 3): state lives in the database (report_schedule), so the first
    # run right at start resumes whatever a stopped worker left due or half-done.
    every(
        POLL_INTERVAL_SECONDS,
        # shutdown() marks the scheduler stopped before it waits for running jobs: the
        # poller sees that and ends within a page instead of holding SIGTERM for a report.
        once(ReportPoller(config, stopping=lambda: scheduler.state == STATE_STOPPED)),
        "report_poll",
        next_run_time=datetime.now(UTC),
    )


def stop_on_signals(stop: threading.Event) -> None:
    """Set `stop` on SIGTERM (systemd, honcho, Heroku) and SIGINT (Ctrl-C), logging one line."""

    def handler(signum, frame):  # noqa: ARG001
        if not stop.is_set():
            log.info("received %s: finishing the running jobs, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_scheduler(config: Config, stop: threading.Event | None = None) -> None:
    """Run the jobs until `stop` is set (by SIGTERM or SIGINT); running jobs finish first.

    The scheduler runs in background threads and the main thread only waits: a signal
    handler that shut a BlockingScheduler down from inside its own loop raised
    SchedulerNotRunningError and exited 1 (issue 14).
    """
    db = open_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
    migrate(db)
    db.close()
    stop = stop or threading.Event()
    stop_on_signals(stop)
    # The worker's counters (API calls, imports, refreshes) go where GET /metrics sums them.
    prepare_process(config.metrics_dir)
    # Issue 19: of several workers on one database, one runs the jobs; decided before the
    # first run so that a lone worker starts its jobs at once.
    leadership = Leadership(open_db(config.database_path, lock_timeout=config.db_lock_timeout_seconds))
    leadership.check()
    scheduler = BackgroundScheduler(timezone="UTC")
    add_jobs(scheduler, config, leadership)
    scheduler.start()
    log.info("worker started: jobs %s", ", ".join(job.id for job in scheduler.get_jobs()))
    try:
        while not stop.wait(1.0):
            pass
        scheduler.shutdown(wait=True)
    finally:
        leadership.release()  # at once, so that another worker takes over at its next try
        leadership.db.close()
