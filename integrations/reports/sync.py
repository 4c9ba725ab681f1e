"""Report sync: fetch Zoom's participant reports and rosters into the store, now or on schedule.

Each sync reads as its steps: `fetch_*` (integrations/zoom/reports.py), `*_to_row`, then
`save_*` (store/reports.py); the poller's state lives in the database."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.config import Config, ConfigError
from integrations.derived.refresh import refresh_instances
from integrations.funnel.stages import refresh_funnel
from integrations.reports.plan import FetchPlan, parse_delays
from integrations.zoom.client import (
    DailyLimitError,
    Forbidden,
    NotFound,
    RateLimited,
    ReportTooOld,
    Unauthorized,
    ZoomApiError,
    ZoomAuthError,
    ZoomClient,
    ZoomError,
)
from integrations.zoom.polls import answer_rows, fetch_poll_definitions, fetch_poll_report, poll_to_rows
from integrations.zoom.reports import (
    KINDS,
    REGISTRANT_STATUSES,
    fetch_instances,
    fetch_participants,
    fetch_registrants,
    instance_to_row,
    looks_unprocessed,
    participant_to_row,
    registrant_to_row,
)
from store.db import DatabaseUnavailable, Store, durable_write, open_db
from store.events import get_state, set_state
from store.quiz import save_poll_definitions, save_poll_report
from store.reports import (
    FetchSummary,
    claim_fetch,
    complete_fetch,
    due_fetches,
    ended_instances,
    fail_fetch,
    from_iso,
    meeting_kind,
    meetings_to_discover,
    record_discovery,
    save_instances,
    save_registrants,
    save_report_page,
    schedule_instances,
    schedule_row,
    start_fetch,
    to_iso,
    unscheduled_ended_instances,
    worker_name,
)

log = logging.getLogger(__name__)

DAILY_LIMIT_STATE = "zoom_daily_limit_until"
POLL_INTERVAL_SECONDS = 60  # how often the worker looks for due fetches
DISCOVER_EVERY = timedelta(hours=1)  # how often a meeting tracked by hand has its instance list read
# Meetings that send webhooks announce their ends; their lists are read only to catch a lost one.
WEBHOOK_DISCOVER_EVERY = timedelta(hours=6)
CLAIM_FOR = timedelta(hours=1)  # a claimed fetch is retried by another worker after this
AUTH_PAUSE = timedelta(minutes=15)  # after Zoom refuses the credentials, before the next token request
HISTORY_MARGIN = timedelta(days=1)  # instances started this long before tracking began are polled too
FETCHES_PER_RUN = 20
DISCOVERIES_PER_RUN = 20

Progress = Callable[[str], None]


class SyncInterrupted(Exception):
    "The worker is stopping; the fetch starts again at its next run"


@dataclass
class RegistrantSync:
    """What one roster fetch stored."""

    meeting_id: str
    pages: int = 0
    registrants: int = 0
    new: int = 0
    by_status: Counter[str] = field(default_factory=Counter)


@dataclass
class MeetingSync:
    """What `sync_meeting` did for a meeting or webinar."""

    meeting_id: str
    kind: str
    fetches: list[FetchSummary] = field(default_factory=list)
    failures: list[tuple[str, ZoomError]] = field(default_factory=list)
    registrants: RegistrantSync | None = None
    polls: PollSync | None = None


@dataclass
class PollSync:
    """What one poll and quiz fetch stored."""

    meeting_id: str
    polls: int = 0
    quizzes: int = 0
    answers: int = 0
    instances: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (what, error)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


# -- one instance -----------------------------------------------------------------------------


def sync_instance(
    db: Store,
    client: ZoomClient,
    instance_uuid: str,
    *,
    kind: str,
    meeting_id: str | None = None,
    progress: Progress | None = None,
    on_complete: Callable[[int], Mapping[str, Any]] | None = None,
    on_failure: Callable[[BaseException], Mapping[str, Any]] | None = None,
    stopping: Callable[[], bool] | None = None,
) -> FetchSummary:
    """Fetch an instance's whole participant report and store it; raises ZoomError on failure.

    `on_complete(unprocessed_rows)` / `on_failure(error)` give schedule fields written in the
    same transaction that records the fetch's end.
    """
    calls_before = client.api_calls
    fetch_id = start_fetch(db, instance_uuid, kind=kind, meeting_id=meeting_id)
    restarts = 0
    unprocessed: dict[int, int] = {}  # page number -> rows not processed yet, this pass
    try:
        for page in fetch_participants(client, instance_uuid, kind):
            if page.restarts != restarts:
                restarts, unprocessed = page.restarts, {}
            rows = [participant_to_row(p) for p in page.items]
            unprocessed[page.number] = sum(looks_unprocessed(r) for r in rows)
            save_report_page(db, fetch_id, instance_uuid, page, rows)
            if stopping and stopping():
                raise SyncInterrupted(
                    f"the worker is stopping: fetch of {instance_uuid} left after {page.number} pages"
                )
            if progress:
                total = f"/{page.page_count}" if page.page_count else ""
                progress(f"{instance_uuid}: page {page.number}{total}, {len(rows)} rows")
    except BaseException as error:
        # Recorded as failed so the instance keeps its last complete report; the error goes on.
        try:
            fail_fetch(
                db,
                fetch_id,
                _one_line(error),
                api_calls=client.api_calls - calls_before,
                restarts=restarts,
                schedule=on_failure(error) if on_failure else None,
            )
        except DatabaseUnavailable as db_error:
            log.error("could not record the failure of fetch %s: %s", fetch_id, db_error)
        raise
    zero = sum(unprocessed.values())
    summary = complete_fetch(
        db,
        fetch_id,
        api_calls=client.api_calls - calls_before,
        restarts=restarts,
        zero_duration_rows=zero,
        schedule=on_complete(zero) if on_complete else None,
    )
    log.info(
        "report of %s complete: %d pages, %d rows (%d new, %d not processed yet), %d API calls",
        instance_uuid,
        summary.pages,
        summary.rows,
        summary.new_rows,
        zero,
        summary.api_calls,
    )
    refresh_instances(db, [instance_uuid])
    return summary


# -- meetings, instances, registrants ---------------------------------------------------------


def _not_this_kind(error: ZoomApiError) -> bool:
    # past_webinars answers 400 code 300 "Invalid webinar ID" for a meeting's ID, and 404
    # code 3001 when the ID is unknown (meetings-api.openapi.json).
    return isinstance(error, NotFound) or (error.status == 400 and error.code == 300)


def discover_instances(
    db: Store, client: ZoomClient, meeting_id: str, *, kind: str | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """Read a meeting's or webinar's past instances from Zoom and store them; (kind, rows)."""
    kind = kind or meeting_kind(db, meeting_id)
    kinds = [kind] if kind else list(KINDS)
    last_error: ZoomApiError | None = None
    for candidate in kinds:
        try:
            page = fetch_instances(client, meeting_id, candidate)
        except ZoomApiError as e:
            if not _not_this_kind(e):
                raise
            last_error = e
            continue
        rows = [r for r in (instance_to_row(i, meeting_id, candidate) for i in page.items) if r]
        save_instances(db, rows, page)
        return candidate, rows
    what = f"{kind} " if kind else "meeting or webinar "
    raise NotFound(
        f"no {what}{meeting_id} on this Zoom account (or no past instances): {last_error}",
        status=404,
        code=last_error.code if last_error else None,
    )


def sync_registrants(
    db: Store, client: ZoomClient, webinar_id: str, *, progress: Progress | None = None
) -> RegistrantSync:
    """Fetch a webinar's registrants of every status and store them."""
    result = RegistrantSync(webinar_id)
    seen: set[str] = set()
    for status in REGISTRANT_STATUSES:
        for page in fetch_registrants(client, webinar_id, status):
            rows = [r for r in (registrant_to_row(item, webinar_id, status=status) for item in page.items) if r]
            saved = save_registrants(db, page, rows)
            result.pages += 1
            result.new += saved.new_rows
            for row in rows:
                if row["registrant_id"] not in seen:
                    seen.add(row["registrant_id"])
                    result.by_status[row["status"] or status] += 1
            if progress:
                progress(f"registrants ({status}): page {page.number}, {len(rows)} rows")
    result.registrants = len(seen)
    return result


def sync_meeting(
    db: Store,
    client: ZoomClient,
    meeting_id: str,
    *,
    instance_uuid: str | None = None,
    kind: str | None = None,
    registrants: bool = True,
    polls: bool = True,
    progress: Progress | None = None,
) -> MeetingSync:
    """Fetch the reports of a meeting's instances (or one) and, for a webinar, its roster.

    Of several instances, one Zoom does not know or no longer keeps is recorded in
    `failures` and the others go on; any other error (credentials, limits, outage) stops
    the sync.
    """
    kind = kind or meeting_kind(db, meeting_id)
    if instance_uuid is not None and kind is not None:
        uuids = [instance_uuid]
    else:
        kind, listed = discover_instances(db, client, meeting_id, kind=kind)
        uuids = (
            [instance_uuid]
            if instance_uuid
            else _merge([r["instance_uuid"] for r in listed], ended_instances(db, meeting_id))
        )
    assert kind is not None
    result = MeetingSync(meeting_id, kind)
    for uuid in uuids:
        try:
            result.fetches.append(sync_instance(db, client, uuid, kind=kind, meeting_id=meeting_id, progress=progress))
        except (NotFound, ReportTooOld) as e:
            if instance_uuid is not None:
                raise  # the one instance asked for: its error is the answer
            log.warning("report of %s not available: %s", uuid, e)
            result.failures.append((uuid, e))
    if registrants and kind == "webinar":
        result.registrants = sync_registrants(db, client, meeting_id, progress=progress)
        refresh_meeting(db, meeting_id)
    done = [f.instance_uuid for f in result.fetches]
    if polls and done:
        result.polls = sync_polls(db, client, meeting_id, kind, done, progress=progress)
    return result


def _poll_error(error: ZoomApiError) -> bool:
    # No polls feature on the plan, a meeting without polls, or an instance Zoom no longer
    # keeps: the attendance still stands, so the sync goes on (meetings-api.openapi.json 400/404).
    return isinstance(error, NotFound | ReportTooOld | Forbidden) or error.status in (400, 404)


def _skip_poll_error(result: PollSync, what: str, error: ZoomApiError) -> None:
    """Log and record a poll fetch that failed for a reason `_poll_error` accepts; re-raise any other."""
    if not _poll_error(error):
        raise error
    log.warning("%s not fetched: %s", what, _one_line(error))
    result.failures.append((what, _one_line(error)))


def sync_polls(
    db: Store,
    client: ZoomClient,
    meeting_id: str,
    kind: str,
    instance_uuids: Iterable[str],
    *,
    progress: Progress | None = None,
) -> PollSync:
    """Fetch a meeting's poll definitions and each instance's poll report (Heavy); store and score them."""
    result = PollSync(meeting_id)
    try:
        page = fetch_poll_definitions(client, meeting_id, kind)
        polls, questions = [], []
        for item in page.items:
            poll, rows = poll_to_rows(item, meeting_id)
            if poll is not None:
                polls.append(poll)
                questions.extend(rows)
        save_poll_definitions(db, meeting_id, page, polls, questions)
        result.polls = len(polls)
        result.quizzes = sum(1 for p in polls if p["poll_type"] == 3)
    except ZoomApiError as e:
        _skip_poll_error(result, f"polls of {meeting_id}", e)
    for uuid in instance_uuids:
        try:
            page = fetch_poll_report(client, uuid, kind)
        except ZoomApiError as e:
            _skip_poll_error(result, f"poll report of {uuid}", e)
            continue
        rows = answer_rows(page.items)
        save_poll_report(db, uuid, page, rows, meeting_id=meeting_id)
        result.answers += len(rows)
        result.instances += 1
        if progress:
            progress(f"{uuid}: poll report, {len(page.items)} participants, {len(rows)} answers")
    refresh_funnel(db, list(instance_uuids))
    return result


def refresh_meeting(db: Store, meeting_id: str) -> None:
    """Bring the derived rows of every instance of `meeting_id` up to date.

    After storing a roster: registrant matches change with it, and without a worker process
    nothing else would refresh them (issue 14: `sync` left rows `rebuild` would change).
    """
    uuids = [r[0] for r in db.execute("SELECT instance_uuid FROM instances WHERE meeting_id = ?", [meeting_id])]
    refresh_instances(db, uuids)  # skips those whose evidence did not change


def _merge(first: Iterable[str], second: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


# -- the scheduled poller ---------------------------------------------------------------------


def _outcome(error: BaseException) -> tuple[str, datetime | None]:
    """Which `FetchPlan.after_failure` rule an error falls under (and when a rate limit lifts)."""
    if isinstance(error, SyncInterrupted):
        return "interrupted", None
    if isinstance(error, RateLimited):
        return "rate_limited", error.retry_at
    if isinstance(error, ZoomAuthError | Unauthorized | Forbidden):
        return "auth", None
    if isinstance(error, ReportTooOld):
        return "too_old", None
    if isinstance(error, NotFound):
        return "not_found", None
    return "transient", None


def paused_until(db: Store, now: datetime) -> datetime | None:
    """When the daily-limit pause ends, if one is in force."""
    value = get_state(db, DAILY_LIMIT_STATE)
    if not value:
        return None
    until = from_iso(value)
    return until if until > now else None


def pause_for_daily_limit(db: Store, until: datetime) -> None:
    """Stop calling Zoom until `until` (kept in the database: survives restarts)."""
    with durable_write(db) as conn:
        set_state(conn, DAILY_LIMIT_STATE, to_iso(until))


def plan_ended_instances(db: Store, delays: tuple[timedelta, ...], now: datetime) -> int:
    """Schedule report fetches for instances webhooks say have ended; returns how many."""
    rows = []
    for instance in unscheduled_ended_instances(db):
        ended_at = from_iso(instance["end_time"])
        rows.append({**instance, "ended_at": to_iso(ended_at), **FetchPlan(ended_at, delays).first(now)})
    return schedule_instances(db, rows) if rows else 0


def discover_tracked(
    db: Store,
    client: ZoomClient,
    delays: tuple[timedelta, ...],
    now: datetime,
    *,
    stopping: Callable[[], bool] | None = None,
) -> int:
    """Read the instance lists of tracked meetings not read for a while; schedule what ended."""
    scheduled = 0
    webhook_cutoff = to_iso(now - WEBHOOK_DISCOVER_EVERY)
    due = [
        m
        for m in meetings_to_discover(db, checked_before=to_iso(now - DISCOVER_EVERY))
        if m["source"] != "webhook" or m["checked_at"] is None or m["checked_at"] < webhook_cutoff
    ]
    for meeting in due[:DISCOVERIES_PER_RUN]:
        if stopping and stopping():
            raise SyncInterrupted("the worker is stopping")
        meeting_id = meeting["meeting_id"]
        try:
            kind, rows = discover_instances(db, client, meeting_id, kind=meeting["kind"])
        except (DailyLimitError, ZoomAuthError, Unauthorized):
            raise
        except ZoomError as e:
            log.warning("instances of %s not read: %s", meeting_id, _one_line(e))
            record_discovery(db, meeting_id, instances=0, error=_one_line(e), checked_at=to_iso(now))
            continue
        record_discovery(db, meeting_id, instances=len(rows), kind=kind, checked_at=to_iso(now))
        since = from_iso(meeting["added_at"]) - HISTORY_MARGIN
        # A listed instance has ended; when exactly is unknown without its webhook, so the
        # delays count from now. Instances from before tracking began are `sync`'s job.
        fresh = [r for r in rows if r["start_time"] is None or from_iso(r["start_time"]) >= since]
        planned = [{**r, "ended_at": to_iso(now), **FetchPlan(now, delays).first(now)} for r in fresh]
        scheduled += schedule_instances(db, planned) if planned else 0
    return scheduled


def fetch_due(
    db: Store,
    client: ZoomClient,
    delays: tuple[timedelta, ...],
    now: Callable[[], datetime],
    *,
    limit: int = FETCHES_PER_RUN,
    stopping: Callable[[], bool] | None = None,
) -> list[FetchSummary]:
    """Fetch the reports whose time has come. Daily limit and credential errors stop the run."""
    done: list[FetchSummary] = []
    worker = worker_name()
    for row in due_fetches(db, now=to_iso(now()), limit=limit):
        if stopping and stopping():
            raise SyncInterrupted("the worker is stopping")
        uuid = row["instance_uuid"]
        moment = now()
        if not claim_fetch(db, uuid, now=to_iso(moment), until=to_iso(moment + CLAIM_FOR), worker=worker):
            continue
        current = schedule_row(db, uuid) or row
        plan = FetchPlan(from_iso(current["ended_at"]), delays)

        def completed(unprocessed: int, current: dict[str, Any] = current, plan: FetchPlan = plan) -> Mapping[str, Any]:
            return plan.after_complete(now(), unprocessed_rows=unprocessed, extra_fetches=current["extra_fetches"])

        def failed(
            error: BaseException, current: dict[str, Any] = current, plan: FetchPlan = plan
        ) -> Mapping[str, Any]:
            outcome, retry_at = _outcome(error)
            stage, attempts = current["stage"], current["attempts"]
            return plan.after_failure(
                outcome, stage=stage, attempts=attempts, now=now(), error=_one_line(error), retry_at=retry_at
            )

        try:
            summary = sync_instance(
                db,
                client,
                uuid,
                kind=current["kind"],
                meeting_id=current["meeting_id"],
                on_complete=completed,
                on_failure=failed,
                stopping=stopping,
            )
        except (DailyLimitError, ZoomAuthError, Unauthorized, SyncInterrupted):
            raise
        except (ZoomError, DatabaseUnavailable) as e:
            log.warning("report fetch of %s failed, rescheduled: %s", uuid, _one_line(e))
            continue
        except Exception:
            # A bug or an input we did not foresee: the fetch is recorded failed and retried
            # with growing waits (then given up); the other due instances still get fetched.
            log.exception("report fetch of %s failed unexpectedly, rescheduled", uuid)
            continue
        done.append(summary)
        if current["kind"] == "webinar" and current["meeting_id"]:
            _refresh_roster(db, client, current["meeting_id"])
        if current["meeting_id"]:
            _refresh_polls(db, client, current["meeting_id"], current["kind"], uuid)
    return done


def _refresh_polls(db: Store, client: ZoomClient, meeting_id: str, kind: str, uuid: str) -> None:
    try:
        sync_polls(db, client, meeting_id, kind, [uuid])
    except (DailyLimitError, ZoomAuthError, Unauthorized, SyncInterrupted):
        raise
    except (ZoomError, DatabaseUnavailable) as e:
        # Fetched again with the instance's next report fetch; the report stays stored.
        log.warning("polls of %s not fetched: %s", uuid, _one_line(e))


def _refresh_roster(db: Store, client: ZoomClient, webinar_id: str) -> None:
    try:
        sync_registrants(db, client, webinar_id)
        refresh_meeting(db, webinar_id)
    except (DailyLimitError, ZoomAuthError, Unauthorized, SyncInterrupted):
        raise
    except (ZoomError, DatabaseUnavailable) as e:
        # The roster is fetched again with the next report fetch; the report stays stored.
        log.warning("registrants of webinar %s not fetched: %s", webinar_id, _one_line(e))


@dataclass
class PollResult:
    """What one run of the report poller did."""

    planned: int = 0
    discovered: int = 0
    fetched: list[FetchSummary] = field(default_factory=list)
    paused_until: datetime | None = None
    error: str | None = None
    auth_failed: bool = False


def poll_reports(
    db: Store,
    client: ZoomClient | None,
    *,
    report_delays: str,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    limit: int = FETCHES_PER_RUN,
    stopping: Callable[[], bool] | None = None,
) -> PollResult:
    """One run of the scheduled poller: plan, discover, fetch what is due (no client: plan only).

    `stopping()` turning true (the worker got SIGTERM) ends the run after the current page.
    """
    delays = parse_delays(report_delays)
    result = PollResult(planned=plan_ended_instances(db, delays, now()))
    result.paused_until = paused_until(db, now())
    if client is None or result.paused_until:
        return result
    try:
        result.discovered = discover_tracked(db, client, delays, now(), stopping=stopping)
        result.planned += plan_ended_instances(db, delays, now())
        result.fetched = fetch_due(db, client, delays, now, limit=limit, stopping=stopping)
    except DailyLimitError as e:
        until = e.retry_at or now() + timedelta(hours=1)
        pause_for_daily_limit(db, until)
        result.paused_until, result.error = until, _one_line(e)
        log.warning("Zoom's daily limit reached: report polling paused until %s", to_iso(until))
    except (ZoomAuthError, Unauthorized) as e:
        result.error, result.auth_failed = _one_line(e), True
        log.error("report polling stopped for this run: %s", e)
    except SyncInterrupted as e:
        result.error = _one_line(e)
        log.info("report polling interrupted: %s", e)
    return result


class ReportPoller:
    """The scheduler job: one `poll_reports` run per call, reusing one client (and token).

    `stopping()` says the worker is shutting down: the job then ends within a page or a
    fraction of a second of waiting, instead of holding SIGTERM for a whole report.
    """

    def __init__(self, config: Config, *, stopping: Callable[[], bool] = lambda: False):
        # REPORT_FETCH_DELAYS is valid here: load_config refuses a bad one.
        self.config = config
        self.stopping = stopping
        self.client: ZoomClient | None = None
        self._warned = False
        self._auth_retry_at = 0.0  # monotonic time before which Zoom is not asked for a token

    def sleep(self, seconds: float) -> None:
        """The client's waits (backoff, Retry-After, pacing), cut short when the worker stops."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.stopping():
                raise SyncInterrupted(f"the worker is stopping ({left:.0f}s of waiting left)")
            time.sleep(min(left, 0.25))

    def _client(self) -> ZoomClient | None:
        if self.client is None:
            try:
                self.client = ZoomClient.from_config(self.config, sleep=self.sleep)
            except ConfigError as e:
                if not self._warned:
                    log.warning("report polling off until credentials are set: %s", e)
                    self._warned = True
        return self.client

    def __call__(self) -> PollResult | None:
        if self.stopping():
            return None
        db = open_db(self.config.database_path, lock_timeout=self.config.db_lock_timeout_seconds)
        # Refused credentials do not get better each minute: plan only until the pause ends.
        client = self._client() if time.monotonic() >= self._auth_retry_at else None
        try:
            result = poll_reports(db, client, report_delays=self.config.report_delays, stopping=self.stopping)
            if result.auth_failed:
                self._auth_retry_at = time.monotonic() + AUTH_PAUSE.total_seconds()
                log.error("Zoom API calls paused for %d minutes: fix the credentials", AUTH_PAUSE.total_seconds() // 60)
            return result
        except DatabaseUnavailable as e:
            log.warning("report polling postponed, database unavailable: %s", e)
            return None
        finally:
            db.close()
