"""The spool (issue 6): webhook deliveries on disk before the answer, imported afterwards.

Frames survive byte for byte; a torn or damaged tail is never read past; a failed write
never leaves bytes that later frames would hide behind; imports are idempotent and resume
exactly where they stopped; finished files go away, torn ones are kept aside.
"""

from __future__ import annotations

import os
import resource
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import integrations.ingest.spool as spool
from integrations.ingest.spool import (
    TORN_SUFFIX,
    Importer,
    SpoolWriter,
    decode,
    encode,
    has_writer,
    import_file,
    import_spool,
    spool_dir,
    spool_files,
    spool_status,
)
from store.db import DatabaseUnavailable, open_db
from store.evidence import Delivery, content_hash
from store.migrations import migrate
from tests.fault_support import participant_body, verify_chain

RECEIVED = "2026-11-27T09:00:00.000000Z"


def delivery(n: int, run: str = "sp", **fields) -> Delivery:
    return Delivery(participant_body(n, run=run), "1764237600", f"v0={n:064x}", **fields)


@pytest.fixture
def database(tmp_path) -> sqlite3.Connection:
    db = open_db(str(tmp_path / "attendance.db"))
    migrate(db)
    yield db
    db.close()


def raw_bodies(db) -> list[bytes]:
    return [bytes(r[0]) for r in db.execute("SELECT body FROM raw_records ORDER BY id")]


@given(
    st.lists(
        st.tuples(
            st.binary(max_size=300),
            st.one_of(st.none(), st.text(max_size=20)),
            st.one_of(st.none(), st.text(max_size=20)),
            st.booleans(),
        ),
        max_size=5,
    )
)
def test_frames_round_trip_every_field_byte_for_byte(items):
    deliveries = [Delivery(body, ts, sig, "req", None, stale, None) for body, ts, sig, stale in items]
    data = b"".join(encode(d, RECEIVED) for d in deliveries)
    decoded, used = decode(data)
    assert used == len(data)
    assert decoded == [d._replace(received_at=RECEIVED) for d in deliveries]


def test_decode_stops_at_the_last_whole_frame_wherever_the_bytes_end():
    frames = [encode(delivery(n), RECEIVED) for n in range(3)]
    data = b"".join(frames)
    ends = [sum(len(f) for f in frames[:k]) for k in range(4)]
    for cut in range(len(data) + 1):
        decoded, used = decode(data[:cut])
        whole = max(k for k in range(4) if ends[k] <= cut)
        assert used == ends[whole] and len(decoded) == whole, cut


def test_decode_never_reads_past_a_damaged_frame():
    frames = [encode(delivery(n), RECEIVED) for n in range(3)]
    damaged = bytearray(frames[1])
    damaged[-5] ^= 0x01  # one bit of the body: the CRC no longer matches
    decoded, used = decode(frames[0] + bytes(damaged) + frames[2])
    assert [d.body for d in decoded] == [delivery(0).body] and used == len(frames[0])


def test_import_is_idempotent_and_resumes_where_it_stopped(database):
    writer = SpoolWriter(spool_dir(database.path))
    first = [delivery(n) for n in range(5)]
    writer.append(b"".join(encode(d, RECEIVED) for d in first))
    name = os.path.basename(writer.path)
    assert import_file(database, writer.directory, name) == (5, True)
    assert import_file(database, writer.directory, name) == (0, True)  # nothing twice
    later = [delivery(n) for n in range(5, 8)] + [first[0]]  # a Zoom retry of an imported one
    writer.append(b"".join(encode(d, RECEIVED) for d in later))
    assert import_file(database, writer.directory, name) == (4, True)
    assert raw_bodies(database) == [d.body for d in first + later[:3]]
    assert verify_chain(Path(database.path)) == 8
    row = database.execute("SELECT imported_bytes, imported_records FROM spool_files").fetchone()
    assert row == (os.path.getsize(writer.path), 9)
    assert spool_status(database)["pending_bytes"] == 0


def test_a_refused_import_moves_nothing_and_a_later_one_moves_everything(database):
    writer = SpoolWriter(spool_dir(database.path))
    deliveries = [delivery(n, run="ro") for n in range(4)]
    writer.append(b"".join(encode(d, RECEIVED) for d in deliveries))
    database.execute("PRAGMA query_only = ON")
    with pytest.raises(DatabaseUnavailable):
        import_spool(database)
    database.execute("PRAGMA query_only = OFF")
    assert raw_bodies(database) == [] and spool_status(database)["pending_bytes"] > 0
    import_spool(database)
    assert raw_bodies(database) == [d.body for d in deliveries]


def test_a_file_without_writer_is_deleted_once_imported_and_a_torn_one_kept_aside(database):
    directory = spool_dir(database.path)
    done = SpoolWriter(directory)
    done.append(encode(delivery(1, run="done"), RECEIVED))
    torn = SpoolWriter(directory)
    whole = encode(delivery(2, run="torn"), RECEIVED)
    torn.append(whole)
    torn_path = torn.path
    live = SpoolWriter(directory)
    live.append(encode(delivery(3, run="live"), RECEIVED))
    done.close()
    torn.close()
    with open(torn_path, "ab") as f:  # a process killed mid-write: half a frame
        f.write(encode(delivery(4, run="torn"), RECEIVED)[:40])
    assert has_writer(live.path) and not has_writer(torn_path)

    result = import_spool(database)
    assert (result.deliveries, result.deleted, result.torn) == (3, 1, 1)
    assert sorted(raw_bodies(database)) == sorted(
        delivery(n, run=r).body for n, r in ((1, "done"), (2, "torn"), (3, "live"))
    )
    assert spool_files(directory) == [os.path.basename(live.path)]  # the live one stays
    assert os.path.exists(torn_path + TORN_SUFFIX)
    assert spool_status(database)["torn_files"] == [os.path.basename(torn_path) + TORN_SUFFIX]
    live.close()
    assert import_spool(database).deleted == 1 and spool_files(directory) == []


def test_a_file_another_importer_finished_meanwhile_is_deleted_not_set_aside(database, monkeypatch):
    writer = SpoolWriter(spool_dir(database.path))
    writer.append(encode(delivery(1, run="race"), RECEIVED))
    name = os.path.basename(writer.path)
    writer.close()
    assert import_file(database, writer.directory, name) == (1, True)  # the other importer
    real, stale = spool.imported_bytes, [True]

    def first_read_stale(db, file_name):  # our look before taking the lock saw 0 bytes done
        if stale[0]:
            stale[0] = False
            return 0
        return real(db, file_name)

    monkeypatch.setattr(spool, "imported_bytes", first_read_stale)
    assert import_file(database, writer.directory, name, finished=True) == (0, True)
    assert spool_files(writer.directory) == []
    assert not os.path.exists(os.path.join(writer.directory, name + TORN_SUFFIX))
    assert raw_bodies(database) == [delivery(1, run="race").body]


def test_a_failed_write_is_cut_away_and_the_next_frames_go_to_a_new_file(database):
    writer = SpoolWriter(spool_dir(database.path))
    ok = encode(delivery(1, run="fsize"), RECEIVED)
    writer.append(ok)
    first_file = writer.path
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    # The file may grow by 100 bytes more: the next frame is written in part, then EFBIG.
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(first_file) + 100, hard))
    try:
        with pytest.raises(OSError):
            writer.append(encode(delivery(2, run="fsize"), RECEIVED))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert os.path.getsize(first_file) == len(ok)  # the partial frame is gone
    after = encode(delivery(3, run="fsize"), RECEIVED)
    writer.append(after)
    assert writer.path != first_file
    writer.close()
    import_spool(database)
    assert raw_bodies(database) == [delivery(1, run="fsize").body, delivery(3, run="fsize").body]


def test_the_deferred_importer_moves_a_burst_in_one_go(database, tmp_path):
    writer = SpoolWriter(spool_dir(database.path))
    importer = Importer(lambda: database, writer, timeout=1, delay_seconds=0.2)
    bodies = []
    for n in range(30):
        d = delivery(n, run="deferred")
        writer.append(encode(d, RECEIVED))
        bodies.append(d.body)
        importer.kick()
    assert raw_bodies(database) == []  # nothing yet: the import waits for the delay
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(raw_bodies(database)) < 30:
        time.sleep(0.05)
    importer.stop()
    assert raw_bodies(database) == bodies
    assert importer.imported == 30
    assert {content_hash(b) for b in bodies} == {r[0] for r in database.execute("SELECT sha256 FROM raw_records")}
