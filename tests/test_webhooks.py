"""POST /webhooks/zoom end to end: signed bytes in, durable rows, normalized events (issue 2)."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from integrations.ingest.normalize import normalize_pending
from integrations.web import create_app
from integrations.zoom.webhooks import INSTANCE_EVENTS, PARTICIPANT_EVENTS
from store import db as store_db
from tests.conftest import API_TOKEN, SHARED, make_config, post_event, signed_headers

WEBHOOKS_DOC = SHARED / "zoom" / "meetings-webhooks.openapi.json"


def joined(
    user_id="16778240",
    *,
    name="Jill Chill",
    email="jill@example.com",
    at="2026-11-27T10:00:00Z",
    ts=1,
    uuid="inst-1==",
    event="meeting.participant_joined",
):
    return {
        "event": event,
        "event_ts": ts,
        "payload": {
            "account_id": "acct",
            "object": {
                "id": "85012345678",
                "uuid": uuid,
                "host_id": "host",
                "topic": "Record attempt",
                "type": 2,
                "participant": {
                    "user_id": user_id,
                    "user_name": name,
                    "participant_uuid": f"pu-{user_id}",
                    "email": email,
                    "registrant_id": "reg-" + user_id,
                    "join_time": at,
                },
            },
        },
    }


def left(user_id="16778240", *, at="2026-11-27T11:00:00Z", ts=2, **kw):
    event = joined(user_id, ts=ts, event="meeting.participant_left", **kw)
    participant = event["payload"]["object"]["participant"]
    del participant["join_time"]
    participant["leave_time"] = at
    participant["leave_reason"] = "left the meeting.<br>Reason: left"
    return event


def raw_rows(db):
    return list(db.query("select * from raw_records order by id"))


def test_valid_event_is_stored_raw_and_normalized(client, db):
    body = json.dumps(joined()).encode()
    response = client.post(
        "/webhooks/zoom",
        data=body,
        headers={**signed_headers(body), "x-zm-request-id": "req-1", "x-zm-trackingid": "trk-1"},
    )
    assert response.status_code == 200
    assert response.json == {"status": "stored"}
    [row] = raw_rows(db)
    assert bytes(row["body"]) == body
    assert row["sha256"] == hashlib.sha256(body).hexdigest()
    assert row["zm_request_id"] == "req-1" and row["zm_trackingid"] == "trk-1"
    assert row["zm_signature"].startswith("v0=") and row["stale_timestamp"] == 0
    assert normalize_pending(db) == ["inst-1=="]
    [event] = list(db.query("select * from participant_events"))
    assert {
        k: event[k]
        for k in (
            "event",
            "kind",
            "meeting_id",
            "instance_uuid",
            "user_id",
            "email",
            "user_name",
            "join_time",
            "registrant_id",
            "raw_id",
        )
    } == {
        "event": "meeting.participant_joined",
        "kind": "meeting",
        "meeting_id": "85012345678",
        "instance_uuid": "inst-1==",
        "user_id": "16778240",
        "email": "jill@example.com",
        "user_name": "Jill Chill",
        "join_time": "2026-11-27T10:00:00Z",
        "registrant_id": "reg-16778240",
        "raw_id": row["id"],
    }
    assert db["tracked_meetings"].get("85012345678")["source"] == "webhook"


def test_duplicate_delivery_is_stored_once_and_answered_200(client, db):
    event = joined()
    assert post_event(client, event).json == {"status": "stored"}
    second = post_event(client, event, timestamp=int(time.time()) + 1)  # a retry: new headers, same body
    # Answered as any delivery (it is durable in the spool first); the import stores it once.
    assert second.status_code == 200 and second.json == {"status": "stored"}
    assert len(raw_rows(db)) == 1
    normalize_pending(db)
    normalize_pending(db)
    assert db["participant_events"].count == 1


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda body, headers: (body + b" ", headers), id="tampered-body"),
        pytest.param(
            lambda body, headers: (body, {**headers, "x-zm-signature": "v0=" + "0" * 64}), id="wrong-signature"
        ),
        pytest.param(lambda body, headers: (body, signed_headers(body, secret="not-the-secret")), id="wrong-secret"),
        pytest.param(
            lambda body, headers: (body, {k: v for k, v in headers.items() if k != "x-zm-signature"}),
            id="missing-signature",
        ),
        pytest.param(
            lambda body, headers: (body, {k: v for k, v in headers.items() if k != "x-zm-request-timestamp"}),
            id="missing-timestamp",
        ),
        pytest.param(
            lambda body, headers: (
                body,
                {**headers, "x-zm-request-timestamp": str(int(headers["x-zm-request-timestamp"]) + 1)},
            ),
            id="timestamp-changed",
        ),
    ],
)
def test_bad_signature_is_401_json_and_nothing_stored(client, db, mutate, caplog):
    body = json.dumps(joined()).encode()
    body, headers = mutate(body, signed_headers(body))
    response = client.post("/webhooks/zoom", data=body, headers=headers)
    assert response.status_code == 401
    assert response.json["error"] == "invalid_signature" and response.json["message"]
    assert raw_rows(db) == []
    assert "rejected webhook" in caplog.text


@pytest.mark.parametrize("offset", [-3600, 3600], ids=["stale", "future"])
def test_timestamp_outside_tolerance_is_stored_flagged_and_acknowledged(client, db, offset):
    response = post_event(client, joined(), timestamp=int(time.time()) + offset)
    assert response.status_code == 200
    [row] = raw_rows(db)
    assert row["stale_timestamp"] == 1
    normalize_pending(db)
    assert db["participant_events"].count == 1  # still evidence, still normalized


def test_timestamp_inside_tolerance_is_not_flagged(client, db):
    post_event(client, joined(), timestamp=int(time.time()) - 200)
    assert raw_rows(db)[0]["stale_timestamp"] == 0


def test_out_of_order_leave_before_join_is_kept_in_event_time(client, db):
    assert post_event(client, left(ts=2000)).status_code == 200
    assert post_event(client, joined(ts=1000)).status_code == 200
    normalize_pending(db)
    events = list(db.query("select event, join_time, leave_time, event_ts from participant_events order by event_ts"))
    assert [e["event"] for e in events] == ["meeting.participant_joined", "meeting.participant_left"]
    assert events[1]["leave_time"] == "2026-11-27T11:00:00Z"


def test_late_older_event_never_overwrites_newer_instance_state(client, db):
    def ended(ts, end):
        return {
            "event": "meeting.ended",
            "event_ts": ts,
            "payload": {
                "account_id": "a",
                "object": {"id": "85012345678", "uuid": "inst-1==", "topic": f"topic at {ts}", "end_time": end},
            },
        }

    post_event(client, ended(5000, "2026-11-27T12:00:00Z"))
    post_event(client, ended(4000, "2026-11-27T11:30:00Z"))  # older, arrives later
    normalize_pending(db)
    instance = db["instances"].get("inst-1==")
    assert instance["end_time"] == "2026-11-27T12:00:00Z"
    assert instance["topic"] == "topic at 5000"


def test_unknown_event_type_is_stored_raw_and_acknowledged(client, db):
    event = {"event": "meeting.sharing_started", "event_ts": 1, "payload": {"object": {"uuid": "x"}}}
    assert post_event(client, event).status_code == 200
    normalize_pending(db)
    [row] = raw_rows(db)
    assert row["event"] == "meeting.sharing_started" and row["parse_error"] is None
    assert db["participant_events"].count == 0


@pytest.mark.parametrize(
    "body, error",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"[1, 2]", "not an object"),
        (
            b'{"event": "meeting.participant_joined", "payload": {"object": {"uuid": "u"}}}',
            "missing payload.object.participant",
        ),
        (b'{"payload": {}}', "event"),
    ],
)
def test_signed_unparseable_body_is_stored_acknowledged_and_listed(client, db, body, error, runner_env):
    assert post_event(client, body).status_code == 200
    normalize_pending(db)
    [row] = raw_rows(db)
    assert bytes(row["body"]) == body
    assert error in row["parse_error"]
    result = runner_env(["problems"])
    assert result.exit_code == 0 and f"#{row['id']}" in result.output and error in result.output


def test_invalid_time_is_a_warning_not_a_loss(client, db):
    event = joined(at="yesterday-ish")
    post_event(client, event)
    normalize_pending(db)
    [row] = raw_rows(db)
    assert "join_time is not a time" in row["parse_error"]
    [normalized] = list(db.query("select join_time, user_id from participant_events"))
    assert normalized == {"join_time": None, "user_id": "16778240"}


def test_url_validation_published_vector(tmp_path):
    app = create_app(make_config(tmp_path, ZOOM_WEBHOOK_SECRET_TOKEN="secretValueTest"))
    body = json.dumps(
        {
            "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"},
            "event_ts": 1654503849680,
            "event": "endpoint.url_validation",
        }
    ).encode()
    response = app.test_client().post(
        "/webhooks/zoom", data=body, headers=signed_headers(body, secret="secretValueTest")
    )
    assert response.status_code == 200
    assert response.json == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": "70c1f2e2e6ca2d39297490d1f9142c7d701415ea8e6151f6562a08fa657a40ff",
    }


def test_url_validation_needs_a_valid_signature(client):
    body = json.dumps({"payload": {"plainToken": "abc"}, "event": "endpoint.url_validation"}).encode()
    response = client.post("/webhooks/zoom", data=body, headers=signed_headers(body, secret="wrong"))
    assert response.status_code == 401


def test_missing_secret_fails_closed_with_503(tmp_path, caplog):
    app = create_app(make_config(tmp_path, ZOOM_WEBHOOK_SECRET_TOKEN=None))
    body = json.dumps(joined()).encode()
    response = app.test_client().post("/webhooks/zoom", data=body, headers=signed_headers(body))
    assert response.status_code == 503 and response.json["error"] == "not_configured"
    assert "ZOOM_WEBHOOK_SECRET_TOKEN is not set" in caplog.text


def test_oversize_body_is_413_json(client, db):
    body = b'{"event":"x","pad":"' + b"a" * (1024 * 1024) + b'"}'
    response = client.post("/webhooks/zoom", data=body, headers=signed_headers(body))
    assert response.status_code == 413 and response.json["message"]
    assert raw_rows(db) == []


def test_body_of_exactly_one_mib_is_accepted(client, db):
    prefix, suffix = b'{"event":"x","pad":"', b'"}'
    body = prefix + b"a" * (1024 * 1024 - len(prefix) - len(suffix)) + suffix
    assert client.post("/webhooks/zoom", data=body, headers=signed_headers(body)).status_code == 200


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_wrong_method_is_405_json(client, method):
    response = getattr(client, method)("/webhooks/zoom")
    assert response.status_code == 405 and response.json["error"] == "Method Not Allowed"
    assert "POST" in response.headers["Allow"]


def test_unknown_path_is_404_json(client):
    assert client.get("/nowhere").json["error"] == "Not Found"


def test_healthz_reports_counts(client):
    post_event(client, joined())
    assert client.get("/healthz").json == {"status": "ok"}  # details only with the API token (issue 14)
    body = client.get("/healthz", headers={"Authorization": f"Bearer {API_TOKEN}"}).json
    assert body == {
        "status": "ok",
        "database": "ok",
        "records": 1,
        "pending_normalization": 1,
        "spool": {"files": 1, "pending_bytes": 0, "torn_files": []},  # imported right after the answer
        "alerts": [],  # none raised (issue 18)
        "worker_leader": None,  # no worker has taken the lead (issue 19)
    }


def test_healthz_is_503_when_database_is_unreadable(app, config, client):
    assert client.get("/healthz").status_code == 200
    store_db._local.dbs.clear()  # drop this thread's cached connection
    for suffix in ("-wal", "-shm"):
        if os.path.exists(config.database_path + suffix):
            os.remove(config.database_path + suffix)
    with open(config.database_path, "wb") as f:
        f.write(b"this is not a database" * 1000)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json == {"status": "unavailable"}
    response = client.get("/healthz", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 503 and response.json["status"] == "unavailable"


def _examples():
    doc = json.loads(WEBHOOKS_DOC.read_text())
    for name, operations in sorted(doc["webhooks"].items()):
        wanted = "participant" in name or name.endswith((".started", ".ended")) or "waiting_room" in name
        if not wanted or not name.startswith(("meeting.", "webinar.")):
            continue
        for operation in operations.values():
            content = operation["requestBody"]["content"]["application/json"]
            for example in (content.get("examples") or {}).values():
                yield name, example["value"]


EXAMPLES = list(_examples())


def test_openapi_document_has_the_examples_we_rely_on():
    names = {name for name, _ in EXAMPLES}
    for needed in (
        "meeting.participant_joined",
        "meeting.participant_left",
        "webinar.participant_joined",
        "webinar.participant_left",
        "meeting.started",
        "meeting.ended",
        "webinar.started",
        "webinar.ended",
        "meeting.participant_joined_waiting_room",
    ):
        assert needed in names


@pytest.mark.parametrize("name, example", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_openapi_example_is_stored_and_normalized(client, db, name, example):
    body = example.encode() if isinstance(example, str) else json.dumps(example).encode()
    assert post_event(client, body).status_code == 200
    normalize_pending(db)
    [row] = raw_rows(db)
    assert row["event"] == name
    assert row["parse_error"] is None, row["parse_error"]
    data = json.loads(body)
    obj = data["payload"]["object"]
    assert row["meeting_uuid"] == obj["uuid"]
    if name in PARTICIPANT_EVENTS:
        [event] = list(db.query("select * from participant_events"))
        participant = obj["participant"]
        assert event["user_name"] == participant.get("user_name")
        assert event["user_id"] == (str(participant["user_id"]) if participant.get("user_id") else None)
        assert event["email"] == (participant.get("email") or None)
        assert event["kind"] == name.split(".")[0]
        assert event["event_ts"] == data["event_ts"]
    elif name in INSTANCE_EVENTS:
        instance = db["instances"].get(obj["uuid"])
        assert instance["meeting_id"] == str(obj["id"])
        assert instance["topic"] == obj["topic"]
        if name.endswith(".started"):
            assert instance["start_time"] == obj["start_time"]
        else:
            assert instance["end_time"] is not None
    else:
        assert db["participant_events"].count == 0
