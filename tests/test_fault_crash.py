"""Crash faults (issue 7; also issue 2's Procfile kill -9 test): kill -9 of the real web
process under load loses nothing it acknowledged, and it keeps accepting after a restart."""

from __future__ import annotations

import random
import threading
import time

import pytest

from store.evidence import content_hash
from tests.fault_support import participant_body, post_signed, start_web, stored_hashes, verify_chain

pytestmark = pytest.mark.slow

POSTERS = 4
ROUNDS = 3


class Posters:
    """Concurrent signed posters; each remembers which bodies got a 2xx."""

    def __init__(self, port: int, run: str):
        self.port = port
        self.run = run
        self.acked: list[bytes] = []
        self.refused: list[tuple[int, bytes]] = []
        self.transport_errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, args=(i,), daemon=True) for i in range(POSTERS)]

    def _post(self, index: int) -> None:
        n = 0
        while not self._stop.is_set() and n < 100_000:
            body = participant_body(index * 100_000 + n, run=self.run)
            n += 1
            try:
                status, answer = post_signed(self.port, body, timeout=10)
            except OSError:
                with self._lock:
                    self.transport_errors += 1
                time.sleep(0.01)
                continue
            with self._lock:
                if 200 <= status < 300:
                    self.acked.append(body)
                else:
                    self.refused.append((status, answer))

    def __enter__(self) -> Posters:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)


def test_kill9_of_procfile_web_under_load_loses_no_acknowledged_event(tmp_path):
    database = tmp_path / "attendance.db"
    acked: list[bytes] = []
    rng = random.Random()
    for round_no in range(ROUNDS):
        web = start_web(database)
        try:
            with Posters(web.port, run=f"crash{round_no}") as posters:
                # A random moment under load: several requests are mid-write when it lands.
                time.sleep(rng.uniform(0.5, 1.5))
                web.kill9()
            assert posters.refused == [], f"a healthy server refused events: {posters.refused[:3]}"
            assert len(posters.acked) >= 10, (
                f"round {round_no}: too little load to mean anything ({len(posters.acked)} acked)\n{web.log()[-2000:]}"
            )
            acked.extend(posters.acked)
            print(f"round {round_no}: {len(posters.acked)} acknowledged, {posters.transport_errors} cut off by kill -9")
        finally:
            web.kill9()

    stored = stored_hashes(database)
    missing = [body for body in acked if content_hash(body) not in stored]
    assert missing == [], f"{len(missing)} of {len(acked)} acknowledged events are not in the database"
    assert all(stored[content_hash(body)] == body for body in acked), "a stored body differs from the bytes posted"
    assert verify_chain(database) == len(stored) >= len(acked)

    # After the crashes the restarted process recovers the WAL and keeps accepting.
    web = start_web(database)
    try:
        after = [participant_body(n, run="after") for n in range(5)]
        assert [post_signed(web.port, body)[0] for body in after] == [200] * 5
        assert post_signed(web.port, acked[0])[1] == b'{"status":"duplicate"}'
    finally:
        web.stop()
    stored = stored_hashes(database)
    assert all(content_hash(body) in stored for body in after)
    verify_chain(database)
