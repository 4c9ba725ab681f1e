"""A limit on failed dashboard sign-ins per client address: one token bucket each, in this process.

Each wrong password takes a token; a bucket holds ATTEMPTS tokens and refills at ATTEMPTS per
PERIOD seconds, so a client gets 10 tries at once and then one every 6 seconds. Pure: the clock
is passed in (tests step it), and Flask is not imported (views.py answers 429).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

ATTEMPTS = 10  # failed sign-ins a client may make at once ...
PERIOD = 60.0  # ... and again per this many seconds
MAX_CLIENTS = 10_000  # addresses remembered; beyond this the fullest buckets are forgotten first


class LoginLimiter:
    """Failed sign-ins per client address, as token buckets: `retry_after` before checking, `failed` after."""

    def __init__(
        self,
        attempts: int = ATTEMPTS,
        period: float = PERIOD,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.attempts = attempts
        self.rate = attempts / period  # tokens per second
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, when counted)
        self._lock = threading.Lock()  # gthread workers serve several requests at once

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self.attempts, now))
        return min(self.attempts, tokens + (now - at) * self.rate)

    def retry_after(self, client: str) -> int:
        """Whole seconds until `client` may try a password again; 0 when it may now."""
        with self._lock:
            tokens = self._tokens(client, self.clock())
        return 0 if tokens >= 1 else math.ceil((1 - tokens) / self.rate)

    def failed(self, client: str) -> None:
        """Count one wrong password from `client`."""
        with self._lock:
            now = self.clock()
            self._buckets[client] = (max(0.0, self._tokens(client, now) - 1), now)
            if len(self._buckets) > self.max_clients:
                self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop refilled buckets (they equal no entry); if still too many, the fullest ones."""
        kept = sorted(self._buckets.items(), key=lambda item: self._tokens(item[0], now))
        self._buckets = {
            client: bucket for client, bucket in kept[: self.max_clients] if self._tokens(client, now) < self.attempts
        }
