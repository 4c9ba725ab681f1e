"""Slow clients for bench_slow_clients.py and the test: connections that trickle their headers
or their body a byte at a time, on 127.0.0.1 only, each for a bounded time."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class SlowClients:
    """`headers` connections trickling a request line and headers, `bodies` trickling a body."""

    port: int
    headers: int
    bodies: int
    interval: float = 0.5  # seconds between bytes
    lifetime: float = 60.0  # each gives up after this long (bounded load)
    opened: int = 0
    cut_off: list[float] = field(default_factory=list)  # seconds until the server closed each
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _trickle(self, prefix: bytes, payload: bytes) -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        except OSError:
            return
        self.opened += 1
        started = time.monotonic()
        try:
            sock.sendall(prefix)
            sock.settimeout(self.interval)
            for byte in payload:
                if self._stop.is_set() or time.monotonic() - started > self.lifetime:
                    return
                sock.sendall(bytes([byte]))
                try:
                    if sock.recv(1024) == b"":
                        self.cut_off.append(time.monotonic() - started)
                        return
                except TimeoutError:
                    pass
                except OSError:
                    self.cut_off.append(time.monotonic() - started)
                    return
        except OSError:
            self.cut_off.append(time.monotonic() - started)
        finally:
            sock.close()

    def start(self) -> SlowClients:
        headers = b"POST /webhooks/zoom HTTP/1.1\r\nHost: x\r\n" + b"X-Padding: " + b"a" * 4000 + b"\r\n\r\n"
        body = b"{" + b'"a": 1, ' * 600 + b"}"
        for _ in range(self.headers):
            self._threads.append(threading.Thread(target=self._trickle, args=(b"", headers), daemon=True))
        body_head = (
            b"POST /webhooks/zoom HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for _ in range(self.bodies):
            self._threads.append(threading.Thread(target=self._trickle, args=(body_head, body), daemon=True))
        for thread in self._threads:
            thread.start()
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.interval + 6)

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
