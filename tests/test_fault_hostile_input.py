"""Hostile input (issue 7): fuzzed webhook bodies never get a 500 or crash anything; signed
ones are stored byte for byte and normalization records a parse error where it cannot
read them. Exports stay valid CSV and JSON whatever the display names hold."""

from __future__ import annotations

import copy
import csv
import io
import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.ingest.normalize import normalize_pending
from integrations.reads.formats import FORMULA_STARTS, csv_lines
from integrations.web import MAX_BODY_BYTES, create_app
from integrations.zoom import jsontext
from integrations.zoom.signature import sign
from integrations.zoom.webhooks import ZoomPayloadError, parse_event
from store.db import open_db
from store.evidence import content_hash
from tests.conftest import SECRET, make_config

# Derandomized: the same 150 examples every run, so the counts asserted below (enough signed,
# unsigned and unparseable deliveries) cannot fall short by chance; 8 of 10 once did.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- hostile bodies -------------------------------------------------------------------------

# Strings that hurt: formulas, quotes, separators, newlines, control characters, NUL,
# right-to-left and zero-width marks, lone surrogates (JSON escapes allow them), emoji.
NASTY_STRINGS = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1",
    "\r=1",
    'quote " inside, comma',
    "line\nbreak\r\nand\rreturn",
    "nul\x00byte",
    "\x1b[31mred\x1b[0m\x07\x08",
    "\u202eevil\u202c right-to-left override",
    "\u200f\u200e\u061c marks",
    "\ufeffbom",
    "\ud800 lone surrogate",
    "\udfff",
    "😀 emoji ‍👩‍💻",
    "",
    " ",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 5, max_value=2**70),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(NASTY_STRINGS),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def participant_event(name: str = "meeting.participant_joined") -> dict:
    return {
        "event": name,
        "event_ts": 1764237600123,
        "payload": {
            "account_id": "acct",
            "object": {
                "id": "85012345678",
                "uuid": "fuzz-instance==",
                "host_id": "host",
                "topic": "Fuzz",
                "type": 2,
                "start_time": "2026-11-27T09:00:00Z",
                "participant": {
                    "user_id": "16778240",
                    "user_name": "Jill",
                    "participant_uuid": "pu-1",
                    "participant_user_id": "",
                    "registrant_id": "reg-1",
                    "email": "jill@example.com",
                    "phone_number": "",
                    "customer_key": "",
                    "join_time": "2026-11-27T09:00:01Z",
                    "leave_time": "2026-11-27T09:30:01Z",
                    "date_time": "2026-11-27T09:00:00Z",
                    "leave_reason": "left",
                },
            },
        },
    }


EVENT_NAMES = [
    "meeting.participant_joined",
    "webinar.participant_left",
    "meeting.started",
    "webinar.ended",
    "meeting.participant_joined_waiting_room",
    "meeting.participant_bind",
    "endpoint.url_validation",
    "meeting.unknown_thing",
]


def paths(value, prefix=()):
    """Every path into a JSON value (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


@st.composite
def wrong_type_events(draw) -> bytes:
    """A real event shape with one or more fields replaced by any JSON value."""
    event = participant_event(draw(st.sampled_from(EVENT_NAMES)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(paths(event))))
        replacement = draw(json_values)
        if not path:
            event = replacement
            break
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = replacement
    return json.dumps(event, allow_nan=True).encode()


@st.composite
def deep_nesting(draw) -> bytes:
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    depth = draw(st.integers(50, (MAX_BODY_BYTES - 2_000) // len(opener + closer)))  # under the size limit
    inner = opener * depth + b"1" + closer * depth
    if draw(st.booleans()):  # inside a real event, where the parser looks
        event = participant_event()
        event["payload"]["object"]["participant"]["user_name"] = "@@NEST@@"
        return json.dumps(event).encode().replace(b'"@@NEST@@"', inner)
    return inner


@st.composite
def huge_strings(draw) -> bytes:
    event = participant_event(draw(st.sampled_from(EVENT_NAMES[:4])))
    size = draw(st.integers(10_000, MAX_BODY_BYTES - 2_000))
    unit = draw(st.sampled_from(["x", "é", "\u202e", "=", '"', "\\", "\n"]))
    field = draw(st.sampled_from(["user_name", "email", "user_id", "join_time", "leave_reason"]))
    event["payload"]["object"]["participant"][field] = unit * (size // max(1, len(json.dumps(unit)) - 2))
    return json.dumps(event).encode()[: MAX_BODY_BYTES - 1]


@st.composite
def invalid_utf8(draw) -> bytes:
    body = json.dumps(participant_event(draw(st.sampled_from(EVENT_NAMES)))).encode()
    bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x28\x8c\x28", b"\x80", b"\xc0\xaf"]))
    at = draw(st.integers(0, len(body)))
    return body[:at] + bad + body[at:]


@st.composite
def duplicate_keys(draw) -> bytes:
    first = draw(json_values)
    name = draw(st.sampled_from(EVENT_NAMES))
    key = draw(st.sampled_from(["event", "payload", "event_ts"]))
    body = json.dumps(participant_event(name))[1:-1]
    return (
        "{"
        + json.dumps(key)
        + ":"
        + json.dumps(first)
        + ","
        + body
        + ","
        + json.dumps(key)
        + ":"
        + json.dumps(first)
        + "}"
    ).encode()


def participant_with_name(name: str) -> bytes:
    event = participant_event()
    event["payload"]["object"]["participant"]["user_name"] = name
    return json.dumps(event).encode()


class Body(bytes):
    """A fuzzed body whose repr stays short in Hypothesis reports (some are near 1 MiB)."""

    def __repr__(self) -> str:
        if len(self) <= 200:
            return f"Body({bytes(self)!r})"
        return f"Body({bytes(self[:80])!r} + <{len(self) - 160} bytes> + {bytes(self[-80:])!r})"


hostile_bodies = st.one_of(
    st.binary(max_size=2048),
    wrong_type_events(),
    deep_nesting(),
    huge_strings(),
    invalid_utf8(),
    duplicate_keys(),
    st.sampled_from(NASTY_STRINGS).map(participant_with_name),
    st.text(max_size=300).map(participant_with_name),
).map(Body)


# --- the webhook path -----------------------------------------------------------------------


def unsigned_headers(draw_kind: int, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    return [
        {},
        {"x-zm-request-timestamp": ts},
        {"x-zm-request-timestamp": ts, "x-zm-signature": "v0=" + "0" * 64},
        {"x-zm-request-timestamp": ts, "x-zm-signature": sign(body, timestamp=ts, secret="not-the-secret")},
        {"x-zm-request-timestamp": str(int(ts) + 1), "x-zm-signature": sign(body, timestamp=ts, secret=SECRET)},
        {"x-zm-request-timestamp": ts, "x-zm-signature": "v0=é" + sign(body, timestamp=ts, secret=SECRET)[4:]},
    ][draw_kind]


def test_fuzzed_webhooks_never_500_and_signed_ones_are_stored_raw(tmp_path):
    config = make_config(tmp_path)
    client = create_app(config).test_client()
    db = open_db(config.database_path)
    seen = {"signed": 0, "unsigned": 0, "parse_errors": 0}

    @FUZZ
    @given(
        body=hostile_bodies,
        signed=st.booleans(),
        unsigned_kind=st.integers(0, 5),
        timestamp=st.one_of(st.none(), st.text(alphabet="0123456789-+. e", min_size=1, max_size=30)),
    )
    def check(body: bytes, signed: bool, unsigned_kind: int, timestamp: str | None) -> None:
        if signed:
            ts = timestamp.strip() if timestamp and timestamp.strip() else str(int(time.time()))
            headers = {"x-zm-request-timestamp": ts, "x-zm-signature": sign(body, timestamp=ts, secret=SECRET)}
        else:
            headers = unsigned_headers(unsigned_kind, body)
        records_before = db.execute("SELECT count(*) FROM raw_records").fetchone()[0]
        response = client.post("/webhooks/zoom", data=body, headers={"content-type": "application/json", **headers})
        assert response.status_code != 500
        assert response.is_json and "error" in response.json or response.status_code == 200
        if not signed:
            assert response.status_code == 401, (response.status_code, response.data)
            assert db.execute("SELECT count(*) FROM raw_records").fetchone()[0] == records_before, (
                "an unsigned body was stored"
            )
            seen["unsigned"] += 1
            return
        assert response.status_code == 200, (response.status_code, response.data)
        [(stored,)] = db.execute("SELECT body FROM raw_records WHERE sha256 = ?", [content_hash(body)]).fetchall()
        assert bytes(stored) == body
        seen["signed"] += 1

        # The pure parser raises only its own typed error, whatever the bytes.
        try:
            parse_event(body)
            readable = True
        except ZoomPayloadError:
            readable = False
        normalize_pending(db)  # never raises on hostile input: the queue must keep moving
        [(parse_error, event)] = db.execute(
            "SELECT parse_error, event FROM raw_records WHERE sha256 = ?", [content_hash(body)]
        ).fetchall()
        if not readable:
            assert parse_error, "an unreadable delivery has no parse_error for operators"
            assert not (parse_error or "").startswith("unexpected"), parse_error
            seen["parse_errors"] += 1

    check()
    print(f"\nfuzzed deliveries: {seen}")
    assert seen["signed"] >= 30 and seen["unsigned"] >= 30 and seen["parse_errors"] >= 10, seen
    pending = db.execute(
        "SELECT count(*) FROM raw_records WHERE id > (SELECT CAST(value AS INTEGER) FROM state WHERE key = 'normalize_cursor')"
    ).fetchone()[0]
    assert pending == 0


WRONG_VALUES = [
    None,
    True,
    0,
    -1,
    2**63,
    -(2**63) - 1,
    10**400,
    1.5,
    float("inf"),
    "",
    "\ud800",
    "=1+1",
    [],
    [1, "a"],
    {},
    {"x": {}},
]


def test_every_field_with_every_wrong_type_is_stored_and_normalized(tmp_path):
    """Exhaustive, beside the fuzzing: each field of each event shape, each wrong value."""
    config = make_config(tmp_path)
    client = create_app(config).test_client()
    db = open_db(config.database_path)
    bodies = set()
    # One of each shape the parser treats differently: participant, instance, other.
    for name in ("meeting.participant_joined", "webinar.participant_left", "webinar.ended", "meeting.unknown_thing"):
        template = participant_event(name)
        for path in paths(template):
            for value in WRONG_VALUES:
                event = copy.deepcopy(template)
                if path:
                    target = event
                    for key in path[:-1]:
                        target = target[key]
                    target[path[-1]] = value
                else:
                    event = value
                bodies.add(json.dumps(event, allow_nan=True).encode())
    for body in bodies:
        ts = str(int(time.time()))
        response = client.post(
            "/webhooks/zoom",
            data=body,
            headers={"x-zm-request-timestamp": ts, "x-zm-signature": sign(body, timestamp=ts, secret=SECRET)},
        )
        assert response.status_code == 200, (body, response.data)
    normalize_pending(db)
    assert db.execute("SELECT count(*) FROM raw_records").fetchone()[0] == len(bodies)
    unexpected = db.execute("SELECT parse_error FROM raw_records WHERE parse_error LIKE 'unexpected%'").fetchall()
    assert unexpected == []
    cursor = db.execute("SELECT value FROM state WHERE key = 'normalize_cursor'").fetchone()[0]
    assert int(cursor) == db.execute("SELECT max(id) FROM raw_records").fetchone()[0]


def test_oversized_body_is_413_even_when_signed(tmp_path):
    client = create_app(make_config(tmp_path)).test_client()
    body = participant_with_name("x" * MAX_BODY_BYTES)
    ts = str(int(time.time()))
    headers = {"x-zm-request-timestamp": ts, "x-zm-signature": sign(body, timestamp=ts, secret=SECRET)}
    response = client.post("/webhooks/zoom", data=body, headers=headers)
    assert response.status_code == 413 and response.json["message"]


# --- exports ------------------------------------------------------------------------------

FIELDS = ["user_name", "email", "note"]


def parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def assert_csv_round_trips(rows: list[dict]) -> None:
    text = "".join(csv_lines(rows, FIELDS))
    text.encode("utf-8", "surrogatepass")  # something a file can hold
    parsed = parse_csv(text)
    assert parsed[0] == FIELDS
    assert len(parsed) == len(rows) + 1, "a hostile value split or merged rows"
    for row, cells in zip(rows, parsed[1:], strict=True):
        for name, cell in zip(FIELDS, cells, strict=True):
            original = "" if row.get(name) is None else str(row[name])
            assert not cell.startswith(FORMULA_STARTS), f"a spreadsheet would run {cell!r}"
            assert cell == original or (cell == "'" + original and original.startswith(FORMULA_STARTS)), (
                cell,
                original,
            )


def test_csv_export_is_valid_with_the_nastiest_display_names():
    rows = [{"user_name": s, "email": s[::-1], "note": None} for s in NASTY_STRINGS]
    assert_csv_round_trips(rows)


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "user_name": st.one_of(st.text(), st.sampled_from(NASTY_STRINGS)),
                "email": st.text(max_size=20),
                "note": st.none() | st.text(max_size=5),
            }
        ),
        max_size=8,
    )
)
def test_csv_export_round_trips_any_display_name(rows):
    assert_csv_round_trips(rows)


def test_json_export_is_valid_with_the_nastiest_display_names():
    rows = [{"user_name": s} for s in NASTY_STRINGS]
    text = json.dumps(rows, ensure_ascii=False)
    assert json.loads(text) == copy.deepcopy(rows)


def test_lone_surrogate_escapes_become_replacement_characters_and_pairs_stay():
    body = b'{"a": "x\\ud800y", "b": "\\ud83d\\ude00", "\\udfff": ["\\uDC00"], "c": "\\\\ud800"}'
    assert jsontext.loads(body) == {"a": "x\ufffdy", "b": "\U0001f600", "\ufffd": ["\ufffd"], "c": "\\ud800"}
    json.dumps(jsontext.loads(body), ensure_ascii=False).encode("utf-8")  # storable and printable
