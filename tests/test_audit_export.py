"""`export-raw`: every stored record once, `raw` byte for byte as received, safe CSV (issue 5)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.audit import export_parallel as raw_export_parallel
from integrations.audit.export import csv_rows, export_chunks, parse_bound, raw_log_lines
from integrations.ingest.normalize import normalize_pending
from integrations.reads.formats import csv_lines
from integrations.zoom.rawlog import JSONL_COLUMNS, RAW_LOG_COLUMNS, top_level_arrays
from store.evidence import store_delivery
from store.reports import save_instances
from tests.audit_support import (
    INSTANCE,
    MEETING_ID,
    OTHER_INSTANCE,
    joined,
    jsonl,
    report_page,
    report_row,
    run_worker,
    store_report_page,
)
from tests.conftest import post_event

HOSTILE_NAMES = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tTab", 'Comma, Quote "q"', "Two\nlines"]


def body_bytes(line: dict) -> bytes:
    """What `raw` says the stored bytes were."""
    if line["raw_encoding"] == "base64":
        return base64.b64decode(line["raw"])
    return line["raw"].encode("utf-8")


@pytest.fixture
def posted(client, db):
    """Deliveries of every awkward kind, posted as signed bytes; returns {record id: bytes posted}."""
    bodies = [json.dumps(joined(n)).encode() for n in range(3)]
    bodies.append(
        json.dumps(joined(10, name="Zoë \u2028 Ünïcode 😀"), indent=2, ensure_ascii=False).encode()
    )  # pretty, non-ASCII
    bodies.append(b'{"event": "webinar.participant_joined",\r\n "payload": {"object": {"uuid": "x\\ny"}}}\n')
    bodies += [json.dumps(joined(20 + i, name=name)).encode() for i, name in enumerate(HOSTILE_NAMES)]
    bodies += [
        b"not json at all {",
        b"\xff\xfe\x00 binary",
        b"[1, 2, 3]",
        b'{"event": "meeting.created", "payload": {}}',
    ]
    for body in bodies:
        response = post_event(client, body)
        assert response.status_code == 200, response.data
    ids = [r[0] for r in db.execute("SELECT id FROM raw_records ORDER BY id")]
    return dict(zip(ids, bodies, strict=True))


@pytest.fixture
def pages(db, posted):
    """Three report pages after the deliveries: rows (one hostile), an empty page, a broken page."""
    rows = [
        report_row(1),
        report_row(2, name="=cmd|' /C calc'!A0", user_email="a,b@example.com"),
        report_row(3, name="Ünï \u2029"),
    ]
    bodies = [report_page(rows), report_page([]), b'{"participants": [{"name": "cut']
    return {store_report_page(db, body): (body, rows if i == 0 else []) for i, body in enumerate(bodies)}


def export(config, *args: str) -> bytes:
    result = run_worker("export-raw", "--database", config.database_path, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_jsonl_has_every_delivery_once_with_raw_byte_for_byte(config, posted, pages):
    data = export(config)
    lines = jsonl(data)
    assert all(tuple(line) == JSONL_COLUMNS for line in lines)
    webhook_lines = [line for line in lines if line["source"] == "webhook"]
    assert [line["record_id"] for line in webhook_lines] == sorted(posted)
    for line in webhook_lines:
        raw = body_bytes(line)
        assert raw == posted[line["record_id"]]
        assert hashlib.sha256(raw).hexdigest() == line["sha256"]
    # One physical line per record, even for tools that split on Unicode line separators.
    assert len(data.decode("utf-8").splitlines()) == len(lines)


def test_jsonl_report_lines_are_the_rows_of_each_page_as_stored(config, db, posted, pages):
    lines = [line for line in jsonl(export(config)) if line["source"] == "report"]
    assert sorted({line["record_id"] for line in lines}) == sorted(pages)
    for record_id, (body, rows) in pages.items():
        page_lines = [line for line in lines if line["record_id"] == record_id]
        assert all(line["sha256"] == hashlib.sha256(body).hexdigest() for line in page_lines)
        if rows:
            assert [line["item"] for line in page_lines] == list(range(len(rows)))
            position = 0
            for line, row in zip(page_lines, rows, strict=True):
                assert line["event"] == "report.participant"
                assert json.loads(line["raw"]) == row
                position = body.decode().index(line["raw"], position)  # the exact text, in page order
                assert (line["user_name"], line["email"], line["duration"]) == (
                    row["name"],
                    row["user_email"],
                    row["duration"],
                )
                assert line["meeting_uuid"] == INSTANCE
        else:
            (line,) = page_lines  # a page without rows still appears, whole
            assert line["event"] == "report.page" and line["item"] is None
            assert body_bytes(line) == body
    broken = next(line for line in lines if line["record_id"] == max(pages))
    assert broken["parse_error"].startswith("page is not a JSON object")


def test_jsonl_flattens_participant_fields_and_marks_unreadable_bodies(config, posted):
    lines = {line["record_id"]: line for line in jsonl(export(config))}
    first = lines[min(posted)]
    assert first["event"] == "webinar.participant_joined"
    assert (first["meeting_id"], first["meeting_uuid"], first["user_id"], first["email"], first["join_time"]) == (
        MEETING_ID,
        INSTANCE,
        "16778240",
        "attendee0@example.com",
        "2024-05-01T15:01:00Z",
    )
    assert first["participant_user_id"] == "" and first["leave_time"] is None and first["stale_timestamp"] is False
    by_body = {posted[i]: line for i, line in lines.items() if i in posted}
    assert by_body[b"not json at all {"]["parse_error"].startswith("body is not valid JSON")
    assert by_body[b"\xff\xfe\x00 binary"]["raw_encoding"] == "base64"
    assert by_body[b"\xff\xfe\x00 binary"]["parse_error"] == "body is not UTF-8 text"
    assert by_body[b"[1, 2, 3]"]["parse_error"] == "body is JSON list, not an object"


def test_csv_has_the_promised_columns_and_neutralized_formulas(config, posted, pages):
    data = export(config, "--format", "csv")
    reader = csv.DictReader(io.StringIO(data.decode("utf-8"), newline=""))
    assert tuple(reader.fieldnames) == RAW_LOG_COLUMNS
    rows = list(reader)
    assert len(rows) == len(jsonl(export(config)))
    names = {row["user_name"] for row in rows}
    for name in HOSTILE_NAMES:
        expected = "'" + name if name.startswith(("=", "+", "-", "@", "\t")) else name
        assert expected in names
    assert "'=cmd|' /C calc'!A0" in names
    assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for value in row.values())
    report = [row for row in rows if row["event"] == "report.participant"]
    assert [row["email"] for row in report] == ["reported1@example.com", "a,b@example.com", "reported3@example.com"]
    assert report[0]["failover"] == "false" and report[0]["duration"] == "5280"


def test_export_to_a_file_is_owner_only(config, posted, tmp_path):
    out = tmp_path / "log.jsonl"
    result = run_worker("export-raw", "--database", config.database_path, "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert len(jsonl(out.read_bytes())) == len(posted)


def test_meeting_filter_is_the_same_before_and_after_normalization(client, db, config):
    for n in range(4):
        post_event(client, joined(n, instance=INSTANCE if n % 2 else OTHER_INSTANCE))
    post_event(client, {"event": "meeting.created", "payload": {"object": {"id": MEETING_ID}}})
    # The poller learns the instance from Zoom's instance list before it fetches its report.
    save_instances(db, [{"instance_uuid": INSTANCE, "meeting_id": MEETING_ID, "kind": "webinar"}])
    store_report_page(db, report_page([report_row(7)]))

    def ids(meeting):
        return [(line["record_id"], line["item"]) for line in raw_log_lines(db.conn, meeting=meeting)]

    before = {m: ids(m) for m in (INSTANCE, OTHER_INSTANCE, MEETING_ID, "999")}
    normalize_pending(db)
    after = {m: ids(m) for m in (INSTANCE, OTHER_INSTANCE, MEETING_ID, "999")}
    assert before == after
    assert after[INSTANCE] == [(2, None), (4, None), (6, 0)]
    assert after[OTHER_INSTANCE] == [(1, None), (3, None)]
    # The meeting number: every instance, and the delivery that names only the number.
    assert after[MEETING_ID] == [(1, None), (2, None), (3, None), (4, None), (5, None), (6, 0)]
    assert after["999"] == []


def test_since_and_until_select_by_time_received(db):
    for n, at in enumerate(
        [
            "2024-05-01T09:59:59.999999Z",
            "2024-05-01T10:00:00.000000Z",
            "2024-05-01T11:30:00.000000Z",
            "2024-05-02T00:00:00.000000Z",
        ]
    ):
        store_delivery(db, json.dumps(joined(n)).encode(), timestamp="0", signature="v0=x", received_at=at)

    def ids(since=None, until=None):
        return [
            line["record_id"]
            for line in raw_log_lines(db.conn, since=since and parse_bound(since), until=until and parse_bound(until))
        ]

    assert ids(since="2024-05-01T10:00:00Z") == [2, 3, 4]
    assert ids(until="2024-05-01T10:00:00Z") == [1]
    assert ids(since="2024-05-01T12:00:00+02:00", until="2024-05-02") == [2, 3]
    assert ids(since="2024-05-02") == [4]


def test_parse_bound_canonicalizes_and_refuses_nonsense():
    assert parse_bound("2024-05-01") == "2024-05-01T00:00:00.000000Z"
    assert parse_bound("2024-05-01T12:00:00.5+02:00") == "2024-05-01T10:00:00.500000Z"
    with pytest.raises(ValueError, match="not an ISO 8601"):
        parse_bound("yesterday")


def test_export_command_refuses_a_bad_time(config, posted):
    result = run_worker("export-raw", "--database", config.database_path, "--since", "soon")
    assert result.returncode == 2  # a usage error (issue 14)
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "--since" in lines[0] and "not an ISO 8601 date or time: 'soon'" in lines[0]


cell_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False),
    st.text(alphabet=st.sampled_from(list("ab,\"'\r\n\t=+-@ é\u2028")), max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell_values, min_size=3, max_size=3), max_size=5))
def test_csv_rows_write_exactly_what_the_shared_csv_helper_writes(rows):
    fields = ("a", "b", "c")
    lines = [dict(zip(fields, row, strict=True)) for row in rows]
    assert "".join(text + "\r\n" for text in csv_rows(lines, fields)) == "".join(csv_lines(lines, fields))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(max_size=4).filter(lambda k: k != "participants"), json_values, max_size=3),
    st.lists(json_values, max_size=4),
    st.sampled_from([None, 0, 2]),
    st.booleans(),
)
def test_top_level_arrays_give_each_item_with_its_exact_text(other, items, indent, ascii_only):
    document = json.dumps({**other, "participants": items}, indent=indent, ensure_ascii=ascii_only)
    found = top_level_arrays(document, ("participants",))["participants"]
    assert [value for value, _ in found] == items
    position = 0
    for value, text in found:
        assert json.loads(text) == value
        position = document.index(text, position) + len(text)


@pytest.mark.parametrize("document", ["", "[]", '{"a": 1', '{"participants": [1, 2}', '{"a": 1} x', '{"a" 1}', "{,}"])
def test_top_level_arrays_refuse_what_is_not_one_json_object(document):
    with pytest.raises(ValueError):
        top_level_arrays(document, ("participants",))


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("meeting", [None, INSTANCE])
def test_export_in_worker_processes_writes_exactly_the_sequential_export(
    db, config, posted, pages, monkeypatch, tmp_path, fmt, meeting
):
    monkeypatch.setattr(raw_export_parallel, "SLICE_RECORDS", 3)  # many slices from a small log
    expected = b"".join(export_chunks(db.conn, fmt, meeting=meeting))
    out = tmp_path / f"out.{fmt}"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        written = raw_export_parallel.export_to_fd(config.database_path, fmt, fd, workers=2, meeting=meeting)
    finally:
        os.close(fd)
    assert out.read_bytes() == expected
    assert written == len(expected)
    assert len(list(raw_export_parallel.slices(db.conn, meeting=meeting))) > 2
