"""The gunicorn worker class of the web process: gthread that reads whole requests first.

gunicorn's gthread hands a connection to a thread as soon as it is readable, and the thread
then reads headers and body with blocking calls: forty clients trickling a byte a second
held every thread, and Zoom's webhooks and /healthz waited (issue 14). Here the worker's
event loop reads each request (headers, then a Content-Length body up to the app's limit)
without blocking, and a thread gets it only once it is all there; a client that has not
sent it within READ_DEADLINE_SECONDS is cut off. Threads only ever run the app.

gunicorn's own error answers (400, 414, 431 for request lines and headers it refuses) are
JSON here like every other error of the web process: its module-level `write_error` is
replaced when this module is imported, which only gunicorn's worker does.
"""

from __future__ import annotations

import errno
import json
import re
import selectors
import time
from functools import partial

from gunicorn import util
from gunicorn.workers import gthread

# A complete request (headers and body) must arrive within this many seconds of the first
# byte being awaited. Zoom sends a few KB at once; a proxy in front buffers for us anyway.
READ_DEADLINE_SECONDS = 10.0
# Beyond these the request goes to gunicorn's parser, which refuses it (431, 413 by the app).
MAX_HEAD_BYTES = 64 * 1024
MAX_BUFFERED_BODY = 1024 * 1024 + 1
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d{1,12})[ \t]*\r\n", re.IGNORECASE)
_NEEDS_GUNICORN = re.compile(rb"\r\n(transfer-encoding|expect|upgrade):", re.IGNORECASE)


def request_complete(buffer: bytes) -> bool:
    """Whether `buffer` holds a whole request, or enough for gunicorn to answer it (an error, 100-continue)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return len(buffer) > MAX_HEAD_BYTES
    head = buffer[: end + 2]
    if _NEEDS_GUNICORN.search(head):
        return True  # chunked bodies, Expect: 100-continue, upgrades: gunicorn's own handling
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) != 1:
        return True  # no body, or an ambiguous one gunicorn refuses
    length = int(lengths[0])
    return length > MAX_BUFFERED_BODY or len(buffer) - (end + 4) >= length


class _Reading:
    """A connection whose request is being read by the event loop."""

    def __init__(self, conn: gthread.TConn, deadline: float):
        self.conn = conn
        self.deadline = deadline
        self.buffer = bytearray()


class BufferingWorker(gthread.ThreadWorker):
    """gthread whose threads get whole requests: slow clients cost a buffer, never a thread."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reading: dict[int, _Reading] = {}

    def accept(self, listener):
        """Accept a connection and read its request in the event loop."""
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, client_sock, client_addr, listener.getsockname())  # non-blocking
        self._start_reading(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request is read in the event loop too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn)

    def _start_reading(self, conn) -> None:
        reading = _Reading(conn, time.monotonic() + READ_DEADLINE_SECONDS)
        self._reading[conn.sock.fileno()] = reading
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, reading))

    def _stop_reading(self, reading: _Reading) -> None:
        self._reading.pop(reading.conn.sock.fileno(), None)
        try:
            self.poller.unregister(reading.conn.sock)
        except (OSError, KeyError, ValueError):
            pass

    def _on_readable(self, reading: _Reading, _sock) -> None:
        try:
            data = reading.conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away before sending a whole request
            self._stop_reading(reading)
            self.nr_conns -= 1
            reading.conn.close()
            return
        reading.buffer += data
        if request_complete(bytes(reading.buffer)):
            self._stop_reading(reading)
            reading.conn.prebuffered = bytes(reading.buffer)
            self.enqueue_req(reading.conn)

    def murder_pending(self):
        """Also cut off clients that did not send their whole request in time."""
        super().murder_pending()
        now = time.monotonic()
        for reading in [r for r in self._reading.values() if r.deadline <= now]:
            self._stop_reading(reading)
            self.nr_conns -= 1
            reading.conn.close()

    def handle(self, conn):
        """Run the app on a request the event loop has read whole."""
        buffered = getattr(conn, "prebuffered", None)
        if buffered is not None:
            conn.prebuffered = None
            conn.sock.setblocking(True)
            conn.init()
            conn.data_ready = True
            if conn.parser is not None and not conn.is_http2:
                conn.parser.unreader.unread(buffered)
        return super().handle(conn)


_REASON_CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "headers_too_large",
}


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn's error answer, as JSON like the app's own."""
    body = json.dumps({"error": _REASON_CODES.get(status_int, "error"), "message": mesg or reason}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


util.write_error = write_json_error
