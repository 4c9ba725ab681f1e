"""Zoom REST API client: Server-to-Server OAuth, pacing, retries, typed errors.

Retries are an explicit loop (every wait logged, the daily limit stops it, tests inject
the clock): ../shared/zoom/NOTES.md ("REST API", "Rate limits") and issue 3."""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests

from integrations.ops.metrics import count_api_call
from integrations.zoom import jsontext

log = logging.getLogger(__name__)

# Zoom's rate-limit category headers (NOTES.md "Rate limits").
DAILY_LIMIT = "daily-limit"
# Zoom's rate-limit labels. Heavy (reports, poll reports) allows half of Medium's rate on
# every plan (Pro: 10/s against 20/s; NOTES.md "Rate limits"), so its calls get their own,
# slower pace on top of the pace every call keeps.
LIGHT, MEDIUM, HEAVY = "light", "medium", "heavy"
RATE_CLASSES = (LIGHT, MEDIUM, HEAVY)


class ZoomError(Exception):
    "Talking to Zoom's API failed"


class ZoomApiError(ZoomError):
    "Zoom's API answered with an error"

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None, url: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.url = url

    @classmethod
    def from_response(cls, response: requests.Response) -> ZoomApiError:
        """The typed error for an error answer (status, Zoom's `code` and `message`)."""
        code, message = _error_fields(response)
        status = response.status_code
        url = _redact(response.url)
        text = f"Zoom API {status}" + (f" (code {code})" if code is not None else "") + f": {message}"
        error_class: type[ZoomApiError] = ZoomApiError
        if status == 404 or code == 3001:
            error_class = NotFound
        elif code == 12702:
            error_class = ReportTooOld
        elif status == 400 and code == 300 and "page token" in message.lower():
            # "The next page token is invalid or expired." (tokens live 15 minutes)
            error_class = PageTokenExpired
        elif status == 401:
            error_class = Unauthorized
        elif status in (400, 403) and code in (200, 4711, 4700):
            error_class = Forbidden
        return error_class(text, status=status, code=code, url=url)


class ZoomAuthError(ZoomApiError):
    "Zoom rejected the Server-to-Server OAuth credentials"


class Unauthorized(ZoomApiError):
    "Zoom refused the access token"


class Forbidden(ZoomApiError):
    "The app lacks a scope or permission for this call"


class NotFound(ZoomApiError):
    "Meeting, webinar or instance not found (or expired)"


class ReportTooOld(ZoomApiError):
    "Zoom keeps no report for an instance this old"


class PageTokenExpired(ZoomApiError):
    "A next_page_token expired before it was used"


class PaginationError(ZoomError):
    "Zoom's pagination did not end (a page token came back twice or pages never stopped)"


class RateLimited(ZoomApiError):
    "Zoom's rate limit still answers 429 after the retries allowed"

    def __init__(self, message: str, *, retry_at: datetime | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_at = retry_at


class DailyLimitError(RateLimited):
    "The account's daily quota for this API is used up: try again the next UTC day"


class ZoomUnavailable(ZoomError):
    "Zoom's API kept failing (5xx, timeouts, bad answers) past the retries allowed"


@dataclass(frozen=True)
class ZoomResponse:
    """One successful answer: what was asked, the raw bytes, and their JSON."""

    url: str
    status: int
    body: bytes
    data: dict[str, Any]


_UUID_CHARACTERS = re.compile(r"[A-Za-z0-9+/=_-]{1,128}")


class InvalidUUID(ZoomError):
    "A value that is not a Zoom instance UUID (it would change the request's path)"


def encode_uuid(uuid: str) -> str:
    """Percent-encode an instance UUID for a URL path; twice if it starts with `/` or has `//`.

    Raises InvalidUUID for anything but base64-like text: `..` or `%2e` must never reach a URL.
    """
    if not _UUID_CHARACTERS.fullmatch(uuid or ""):
        raise InvalidUUID(f"not a Zoom instance UUID: {uuid[:80]!r}")
    # NOTES.md "IDs": UUIDs are base64-like (+ / =); Zoom needs double encoding in these cases.
    once = quote(uuid, safe="")
    if uuid.startswith("/") or "//" in uuid:
        return quote(once, safe="")
    return once


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After value: seconds, an HTTP date or an ISO date-time."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    when: datetime | None = None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def next_utc_day(now: datetime) -> datetime:
    """Midnight UTC after `now`: when Zoom's daily quotas reset."""
    return (now.astimezone(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


def backoff_seconds(attempt: int, *, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Exponential backoff with full jitter for retry number `attempt` (0-based)."""
    return rand() * min(cap, base * (2**attempt))


def _error_fields(response: requests.Response) -> tuple[int | None, str]:
    try:
        data = response.json()
    except ValueError:
        return None, (response.text[:200].strip() or response.reason or "no message")
    if not isinstance(data, dict):
        return None, str(data)[:200]
    code = data.get("code")
    message = data.get("message") or data.get("reason") or data.get("error") or response.reason or "no message"
    return (code if isinstance(code, int) else None), str(message)


def _redact(url: str) -> str:
    # Page tokens are short-lived bearer-like values; they are evidence in stored pages, not
    # something error messages and logs need.
    return url.split("?", 1)[0]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ZoomClient:
    """A Zoom API session: one requests.Session, a cached token, paced and bounded calls."""

    def __init__(
        self,
        *,
        account_id: str,
        client_id: str,
        client_secret: str,
        api_base_url: str = "https://api.zoom.us/v2",
        oauth_token_url: str = "https://zoom.us/oauth/token",
        requests_per_second: float = 2.0,
        heavy_requests_per_second: float | None = None,
        max_retries: int = 5,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        max_wait: float = 300.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utc_now,
        rand: Callable[[], float] = random.random,
        session: requests.Session | None = None,
        on_call: Callable[[str, int | None], None] = count_api_call,
    ):
        self.account_id = account_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.api_base_url = api_base_url.rstrip("/")
        self.oauth_token_url = oauth_token_url
        self.min_interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        if heavy_requests_per_second is None:
            heavy_requests_per_second = requests_per_second / 2
        self.heavy_interval = 1.0 / heavy_requests_per_second if heavy_requests_per_second > 0 else 0.0
        self.max_retries = max_retries
        self.timeout = (connect_timeout if connect_timeout is not None else min(10.0, timeout), timeout)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        # A 429 asking for a longer wait than this is not slept through: the caller reschedules.
        self.max_wait = max_wait
        self._sleep = sleep
        self._monotonic = monotonic
        self._now = now
        self._rand = rand
        self.session = session or requests.Session()
        # Every call, answered or not, for zoom_api_requests_total (issue 18).
        self._on_call = on_call
        self.session.headers["User-Agent"] = "attendance-worker/0.1 (+report poller)"
        self._lock = threading.RLock()
        self._token: str | None = None
        self._token_expires = 0.0
        self._last_request = -1e9
        self._last_heavy = -1e9
        self.api_calls = 0
        self.token_requests = 0
        self.waited_seconds = 0.0

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> ZoomClient:
        """A client for `config` (raises ConfigError naming each missing credential)."""
        config.require_zoom_api()
        return cls(
            account_id=config.zoom_account_id,
            client_id=config.zoom_client_id,
            client_secret=config.zoom_client_secret,
            api_base_url=config.zoom_api_base_url,
            oauth_token_url=config.zoom_oauth_token_url,
            requests_per_second=config.zoom_requests_per_second,
            heavy_requests_per_second=config.zoom_heavy_requests_per_second,
            max_retries=config.zoom_max_retries,
            timeout=config.zoom_timeout_seconds,
            **kwargs,
        )

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def __enter__(self) -> ZoomClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self, seconds: float, reason: str, *, level: int = logging.WARNING) -> None:
        if seconds <= 0:
            return
        log.log(level, "waiting %.2fs: %s", seconds, reason)
        self.waited_seconds += seconds
        self._sleep(seconds)

    def _pace(self, rate_class: str = MEDIUM) -> None:
        # Pacing keeps us under the account's quota, which every app on the account shares.
        heavy = rate_class == HEAVY and self.heavy_interval > 0
        if self.min_interval <= 0 and not heavy:
            return
        due = self._last_request + self.min_interval
        reason = f"pacing at {1 / self.min_interval:g} requests/s" if self.min_interval > 0 else ""
        if heavy and self._last_heavy + self.heavy_interval > due:
            due = self._last_heavy + self.heavy_interval
            reason = f"pacing Heavy calls at {1 / self.heavy_interval:g} requests/s"
        self._wait(due - self._monotonic(), reason, level=logging.DEBUG)
        self._last_request = self._monotonic()
        if heavy:
            self._last_heavy = self._last_request

    # -- token -----------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token, fetched when none is cached or it is about to expire."""
        with self._lock:
            if self._token is None or self._monotonic() >= self._token_expires:
                self._fetch_token()
            assert self._token is not None
            return self._token

    def invalidate_token(self) -> None:
        """Forget the cached token (Zoom refused it)."""
        with self._lock:
            self._token = None

    def _fetch_token(self) -> None:
        response, _ = self._send(
            "POST",
            self.oauth_token_url,
            what="access token",
            params={"grant_type": "account_credentials", "account_id": self.account_id},
            auth=(self.client_id, self._client_secret),
        )
        if response.status_code in (400, 401, 403):
            code, message = _error_fields(response)
            # Wrong credentials never get better by retrying: one clear error.
            raise ZoomAuthError(
                f"Zoom rejected the Server-to-Server OAuth credentials (HTTP {response.status_code}: {message}); "
                "check ZOOM_ACCOUNT_ID, ZOOM_CLIENT_ID and ZOOM_CLIENT_SECRET",
                status=response.status_code,
                code=code,
                url=self.oauth_token_url,
            )
        if response.status_code != 200:
            raise ZoomApiError.from_response(response)
        try:
            data = response.json()
            token = data["access_token"]
            expires_in = float(data.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as e:
            raise ZoomUnavailable(f"Zoom's token endpoint answered without a usable access_token: {e}") from None
        # Renew shortly before the end so a long listing never runs into an expired token.
        margin = min(300.0, expires_in / 10)
        self._token = token
        self._token_expires = self._monotonic() + expires_in - margin
        log.info("fetched a Zoom access token valid for %ds", int(expires_in))

    # -- calls -----------------------------------------------------------------------------

    def url_for(self, path: str) -> str:
        """The full API URL of `path` (already encoded, e.g. by encode_uuid)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.api_base_url + "/" + path.lstrip("/")

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, rate_class: str = MEDIUM) -> ZoomResponse:
        """GET an API path and return its JSON; raises a ZoomError subclass on failure.

        `rate_class` is the endpoint's Zoom rate-limit label (LIGHT, MEDIUM or HEAVY).
        """
        if rate_class not in RATE_CLASSES:
            raise ValueError(f"rate_class must be one of {RATE_CLASSES}, got {rate_class!r}")
        url = self.url_for(path)
        for refreshed in (False, True):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
            response, data = self._send(
                "GET", url, what="API call", params=params, headers=headers, rate_class=rate_class
            )
            if response.status_code == 401 and not refreshed:
                # Tokens expire mid-job or get revoked: fetch a new one and retry, once.
                log.info("Zoom refused the access token on %s: fetching a new one", _redact(response.url))
                self.invalidate_token()
                continue
            if response.status_code >= 400 or data is None:
                raise ZoomApiError.from_response(response)
            return ZoomResponse(url=response.url, status=response.status_code, body=response.content, data=data)
        raise AssertionError("unreachable")

    def _send(
        self, method: str, url: str, *, what: str, rate_class: str = MEDIUM, **kwargs: Any
    ) -> tuple[requests.Response, dict[str, Any] | None]:
        """One request with pacing, timeouts and bounded retries of 429, 5xx, network errors
        and unreadable answers; returns the response and, for a 2xx API answer, its JSON."""
        attempt = 0
        while True:
            with self._lock:
                self._pace(rate_class)
            failure: str
            # Counted as sent, answered or not: a timed-out call still used quota.
            if method == "GET":
                self.api_calls += 1
            else:
                self.token_requests += 1
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as e:
                self._on_call(url, None)
                failure = f"{type(e).__name__} on {what} {_redact(url)}"
            else:
                self._on_call(url, response.status_code)
                if response.status_code == 429:
                    self._rate_limited(response, attempt, what)
                    attempt += 1
                    continue
                if response.status_code >= 500:
                    failure = f"HTTP {response.status_code} on {what} {_redact(response.url)}"
                elif method != "GET" or response.status_code >= 300:
                    return response, None
                else:
                    data = _json_object(response.content)
                    if data is not None:
                        return response, data
                    # A truncated or garbled body is a transport failure: retry it like a 5xx.
                    failure = f"malformed JSON from {_redact(response.url)}"
            if attempt >= self.max_retries:
                raise ZoomUnavailable(f"{failure}; gave up after {attempt + 1} attempts")
            delay = backoff_seconds(attempt, base=self.backoff_base, cap=self.backoff_cap, rand=self._rand)
            self._wait(delay, f"{failure} (retry {attempt + 1} of {self.max_retries})")
            attempt += 1

    def _rate_limited(self, response: requests.Response, attempt: int, what: str) -> None:
        """Wait as a 429 asks, or raise when the wait belongs to a later run."""
        now = self._now()
        limit_type = response.headers.get("X-RateLimit-Type", "")
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now)
        where = _redact(response.url)
        if limit_type.lower() == DAILY_LIMIT:
            # Sleeping until tomorrow inside a job would block every other job: stop, reschedule.
            retry_at = now + timedelta(seconds=retry_after) if retry_after else next_utc_day(now)
            log.warning("Zoom daily rate limit reached on %s: pausing calls until %s", where, retry_at.isoformat())
            raise DailyLimitError(
                f"Zoom's daily API limit is reached; calls resume at {retry_at:%Y-%m-%d %H:%M} UTC",
                status=429,
                url=where,
                retry_at=retry_at,
            )
        if attempt >= self.max_retries:
            raise RateLimited(
                f"Zoom still answered 429 on {where} after {attempt + 1} attempts",
                status=429,
                url=where,
                retry_at=now + timedelta(seconds=retry_after or self.backoff_cap),
            )
        if retry_after is None:
            delay = backoff_seconds(attempt, base=self.backoff_base, cap=self.backoff_cap, rand=self._rand)
            reason = "no Retry-After, exponential backoff"
        else:
            delay = retry_after
            reason = f"Retry-After {response.headers.get('Retry-After')!r}"
        if delay > self.max_wait:
            raise RateLimited(
                f"Zoom asks to wait {delay:.0f}s on {where}; rescheduling instead",
                status=429,
                url=where,
                retry_at=now + timedelta(seconds=delay),
            )
        category = response.headers.get("X-RateLimit-Category", "?")
        self._wait(delay, f"429 on {what} {where} (category {category}, type {limit_type or '?'}; {reason})")


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        # Display names in reports are typed by attendees: lone surrogate escapes made rows
        # SQLite refuses; too deep a nesting raised RecursionError out of the sync (issue 7).
        data = jsontext.loads(body)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
