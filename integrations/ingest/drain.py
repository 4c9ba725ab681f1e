"""Moving what the answers left behind (a spool, an intake table) after the answers.

`Drainer` is what the SQLite importer and the PostgreSQL chain writer share: a run right
away or from a background thread every `delay_seconds`, and calls that arrive during a run
coalesced into one more run."""

from __future__ import annotations

import atexit
import threading


class Drainer:
    """Runs `_run_once` after answers; subclasses say what one run does and when the thread runs."""

    thread_name = "drain"

    def __init__(self, *, delay_seconds: float):
        self.delay_seconds = delay_seconds
        self._guard = threading.Lock()
        self._running = False
        self._pending = False
        self._retry_after = 0.0
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        """Something was stored: move it now (delay 0), or see that the background thread will."""
        if self.delay_seconds <= 0:
            self.drain()
            return
        if self._thread is None or not self._thread.is_alive():
            with self._guard:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._deferred, name=self.thread_name, daemon=True)
                    self._thread.start()
                    # A web process that stops (SIGTERM, a restart) moves what it took.
                    atexit.register(self._at_exit)
        self._wake_thread()

    def drain(self) -> None:
        """Run until nothing stored before the call is left (unless the database refuses:
        then it waits where it is and the next round retries)."""
        # Whoever runs loops again for every call made meanwhile.
        with self._guard:
            self._pending = True
            if self._running:
                return
            self._running = True
        try:
            while True:
                with self._guard:
                    if not self._pending:
                        self._running = False
                        return
                    self._pending = False
                self._run_once()
        except BaseException:
            with self._guard:
                self._running = False
            raise

    def stop(self) -> None:
        """End the background thread (tests; a web process just exits)."""
        self._stopped.set()
        atexit.unregister(self._at_exit)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _wake_thread(self) -> None:
        self._wake.set()

    def _deferred(self) -> None:
        raise NotImplementedError

    def _at_exit(self) -> None:
        self.drain()

    def _run_once(self) -> None:
        raise NotImplementedError
