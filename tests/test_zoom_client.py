"""The Zoom API client over real HTTP against the simulator (issue 3): tokens, limits, retries, paging."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
import requests
import time_machine

from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar
from integrations.zoom.client import (
    DailyLimitError,
    NotFound,
    PageTokenExpired,
    PaginationError,
    RateLimited,
    ReportTooOld,
    Unauthorized,
    ZoomAuthError,
    ZoomUnavailable,
    backoff_seconds,
    encode_uuid,
    next_utc_day,
    parse_retry_after,
)
from integrations.zoom.reports import (
    PAGE_SIZE,
    fetch_instances,
    fetch_participants,
    fetch_registrants,
    participant_to_row,
    participants_path,
    registrant_to_row,
)
from tests.zoom_support import FakeClock, meeting_dataset, report_row, simulator_client

UUID = "4444AAAiAAAAAiAiAiiAii=="
SLASHED_UUID = "/ukAAAA//BB+cc=="


@pytest.fixture
def sim():
    simulator = ZoomSimulator(meeting_dataset(UUID, 650)).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def clock():
    return FakeClock()


def report_path(uuid: str = UUID) -> str:
    return participants_path(uuid, "meeting")


# -- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uuid", "encoded"),
    [
        ("4444AAAiAAAAAiAiAiiAii==", "4444AAAiAAAAAiAiAiiAii%3D%3D"),
        ("ab+c/d==", "ab%2Bc%2Fd%3D%3D"),  # one slash inside: encoded once
        ("/ukAAAA==", "%252FukAAAA%253D%253D"),  # starts with "/": twice
        ("ab//cd==", "ab%252F%252Fcd%253D%253D"),  # contains "//": twice
        ("81234567890", "81234567890"),
    ],
)
def test_encode_uuid_percent_encodes_and_double_encodes_slashes(uuid, encoded):
    assert encode_uuid(uuid) == encoded


def test_retry_after_reads_seconds_http_dates_and_iso_dates():
    now = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7
    assert parse_retry_after("Mon, 02 Mar 2026 10:00:30 GMT", now=now) == 30
    assert parse_retry_after("2026-03-02T10:01:00Z", now=now) == 60
    assert parse_retry_after("2026-03-02T09:00:00Z", now=now) == 0  # in the past: no wait
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None, now=now) is None


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    assert [backoff_seconds(n, base=1, cap=10, rand=lambda: 1.0) for n in range(6)] == [1, 2, 4, 8, 10, 10]
    assert backoff_seconds(3, base=1, cap=10, rand=lambda: 0.25) == 2


def test_next_utc_day_is_midnight_utc():
    assert next_utc_day(datetime(2026, 3, 2, 23, 59, tzinfo=UTC)) == datetime(2026, 3, 3, tzinfo=UTC)


def test_participant_to_row_keeps_zoom_fields_and_canonical_times():
    row = participant_to_row(
        {
            "id": "",
            "user_id": "16778240",
            "name": "Ana Alvarez",
            "user_email": " ana@example.org ",
            "registrant_id": "abcREG",
            "participant_user_id": "",
            "join_time": "2026-03-01T09:00:00.250Z",
            "leave_time": "2026-03-01T10:00:00Z",
            "duration": 3599,
            "failover": False,
            "status": "in_meeting",
            "customer_key": "",
            "bo_mtg_id": "Dkgwu8nm/ExG1vM+GhLRhA==",
        }
    )
    assert row == {
        "user_id": "16778240",
        "participant_user_id": None,
        "registrant_id": "abcREG",
        "name": "Ana Alvarez",
        "user_email": "ana@example.org",
        "join_time": "2026-03-01T09:00:00.250000Z",
        "leave_time": "2026-03-01T10:00:00Z",
        "duration": 3599,
        "status": "in_meeting",
        "bo_mtg_id": "Dkgwu8nm/ExG1vM+GhLRhA==",
        "customer_key": None,
        "failover": 0,
        "row_hash": row["row_hash"],
    }
    assert len(row["row_hash"]) == 64
    assert participant_to_row(report_row(1))["row_hash"] != participant_to_row(report_row(2))["row_hash"]


def test_registrant_to_row_joins_names_and_keeps_status():
    row = registrant_to_row(
        {
            "id": "r1",
            "email": "a@b.org",
            "first_name": "Ana",
            "last_name": "Alvarez",
            "status": "denied",
            "create_time": "2026-01-02T03:04:05Z",
        },
        "91234567890",
    )
    assert row == {
        "meeting_id": "91234567890",
        "registrant_id": "r1",
        "email": "a@b.org",
        "first_name": "Ana",
        "last_name": "Alvarez",
        "name": "Ana Alvarez",
        "status": "denied",
        "create_time": "2026-01-02T03:04:05Z",
    }
    assert registrant_to_row({"email": "no-id@b.org"}, "1") is None


# -- tokens ---------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_reused(sim, clock):
    client = simulator_client(sim, clock)
    for _ in range(3):
        client.get(report_path(), {"page_size": PAGE_SIZE})
    assert sim.calls["token"] == 1
    assert sim.calls["participants"] == 3
    token_call = next(c for c in sim.log if c.endpoint == "token")
    assert token_call.query == {"grant_type": "account_credentials", "account_id": sim.account_id}


def test_token_is_renewed_shortly_before_it_expires(clock):
    with ZoomSimulator(meeting_dataset(UUID, 3), token_ttl=3600) as sim:
        client = simulator_client(sim, clock)
        client.get(report_path())
        clock.advance(3600 - 400)  # still more than the renewal margin (360 s) left
        client.get(report_path())
        assert sim.calls["token"] == 1
        clock.advance(100)  # now inside the margin
        client.get(report_path())
        assert sim.calls["token"] == 2


def test_expired_token_gets_one_new_token_and_the_call_is_retried(sim, clock):
    client = simulator_client(sim, clock)
    client.get(report_path())
    sim.expire_tokens()  # as when the hour ran out mid-job
    response = client.get(report_path(), {"page_size": PAGE_SIZE})
    assert len(response.data["participants"]) == PAGE_SIZE
    assert sim.calls["token"] == 2
    assert [c.status for c in sim.log if c.endpoint == "participants"] == [200, 401, 200]


def test_a_401_with_a_fresh_token_is_an_error_not_a_loop(sim, clock):
    sim.add_fault("participants", "expired_token", times=10)
    client = simulator_client(sim, clock)
    with pytest.raises(Unauthorized):
        client.get(report_path())
    assert sim.calls["token"] == 2
    assert sim.calls["participants"] == 2


def test_wrong_credentials_give_one_clear_error_and_no_retries(sim, clock):
    client = simulator_client(sim, clock, client_secret="wrong")
    with pytest.raises(ZoomAuthError, match="rejected the Server-to-Server OAuth credentials.*ZOOM_CLIENT_SECRET"):
        client.get(report_path())
    assert sim.calls == {"token": 1}
    assert clock.sleeps == []


def test_wrong_account_id_is_a_credentials_error(sim, clock):
    client = simulator_client(sim, clock, account_id="someone-else")
    with pytest.raises(ZoomAuthError, match="Bad account id"):
        client.get(report_path())
    assert sim.calls == {"token": 1}


# -- rate limits and retries ------------------------------------------------------------------------


def test_429_with_retry_after_seconds_waits_that_long_and_says_so(sim, clock, caplog):
    sim.add_fault("participants", "rate_limit", retry_after="7")
    client = simulator_client(sim, clock)
    with caplog.at_level(logging.WARNING, logger="integrations.zoom.client"):
        response = client.get(report_path())
    assert response.status == 200
    assert clock.sleeps == [7]
    assert sim.calls["participants"] == 2
    assert "waiting 7.00s: 429" in caplog.text and "Retry-After '7'" in caplog.text


def test_429_with_an_iso_retry_after_waits_until_that_time(sim, clock):
    sim.add_fault(
        "participants", "rate_limit", retry_after=(clock.now() + timedelta(seconds=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    client = simulator_client(sim, clock)
    client.get(report_path())
    assert clock.sleeps == [12]


def test_429_with_an_http_date_retry_after_waits_until_that_time(sim, clock):
    sim.add_fault("participants", "rate_limit", retry_after="Mon, 02 Mar 2026 10:00:05 GMT")
    client = simulator_client(sim, clock)
    client.get(report_path())
    assert clock.sleeps == [5]


def test_429_without_retry_after_backs_off_exponentially_with_jitter(sim, clock):
    sim.add_fault("participants", "rate_limit", times=3)
    client = simulator_client(sim, clock, rand=lambda: 0.5)
    client.get(report_path())
    assert clock.sleeps == [0.5, 1.0, 2.0]
    assert sim.calls["participants"] == 4


def test_429_past_the_retries_raises_rate_limited(sim, clock):
    sim.add_fault("participants", "rate_limit", times=10, retry_after="1")
    client = simulator_client(sim, clock, max_retries=2)
    with pytest.raises(RateLimited) as raised:
        client.get(report_path())
    assert raised.value.retry_at is not None
    assert sim.calls["participants"] == 3


def test_a_retry_after_longer_than_the_bound_is_rescheduled_not_slept(sim, clock):
    sim.add_fault("participants", "rate_limit", retry_after="3600")
    client = simulator_client(sim, clock, max_wait=300)
    with pytest.raises(RateLimited) as raised:
        client.get(report_path())
    assert raised.value.retry_at == clock.now() + timedelta(seconds=3600)
    assert clock.sleeps == []


def test_daily_limit_stops_at_once_until_the_next_utc_day(sim, clock):
    sim.add_fault("participants", "daily_limit")
    client = simulator_client(sim, clock)
    # A fixed instant away from midnight: the answer and the check must name the same day.
    with time_machine.travel(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), tick=True):  # T0's day, after it
        with pytest.raises(DailyLimitError) as raised:
            client.get(report_path())
        # The simulator's Retry-After names the next UTC midnight, as Zoom's does.
        assert raised.value.retry_at == next_utc_day(datetime.now(UTC))
    assert sim.calls["participants"] == 1
    assert clock.sleeps == []


def test_daily_limit_without_retry_after_waits_for_midnight_utc(clock):
    with ZoomSimulator(meeting_dataset(UUID, 3)) as sim:
        sim.add_fault("participants", "daily_limit", retry_after="")
        client = simulator_client(sim, clock)
        with pytest.raises(DailyLimitError) as raised:
            client.get(report_path())
    assert raised.value.retry_at == datetime(2026, 3, 3, tzinfo=UTC)


def test_500_is_retried_with_backoff(sim, clock, caplog):
    sim.add_fault("participants", "server_error", times=2)
    client = simulator_client(sim, clock)
    with caplog.at_level(logging.WARNING, logger="integrations.zoom.client"):
        assert client.get(report_path()).status == 200
    assert clock.sleeps == [0.5, 1.0]
    assert sim.calls["participants"] == 3
    assert caplog.text.count("HTTP 500 on API call") == 2


def test_500_past_the_retries_gives_up(sim, clock):
    sim.add_fault("participants", "server_error", times=10)
    client = simulator_client(sim, clock, max_retries=2)
    with pytest.raises(ZoomUnavailable, match="gave up after 3 attempts"):
        client.get(report_path())
    assert sim.calls["participants"] == 3


def test_timeout_is_retried(sim, clock):
    sim.add_fault("participants", "slow", delay=5)
    client = simulator_client(sim, clock, timeout=1.0)
    started = time.monotonic()
    assert client.get(report_path()).status == 200
    assert time.monotonic() - started < 4
    assert client.api_calls == 2
    assert clock.sleeps == [0.5]


def test_malformed_json_is_retried_then_served(sim, clock):
    sim.add_fault("participants", "malformed_json")
    client = simulator_client(sim, clock)
    assert len(client.get(report_path(), {"page_size": 300}).data["participants"]) == 300
    assert sim.calls["participants"] == 2


def test_every_call_carries_connect_and_read_timeouts(sim, clock):
    seen = []

    class RecordingSession(requests.Session):
        def request(self, method, url, **kwargs):
            seen.append(kwargs.get("timeout"))
            return super().request(method, url, **kwargs)

    client = simulator_client(sim, clock, session=RecordingSession(), timeout=12)
    client.get(report_path())
    assert seen == [(10.0, 12), (10.0, 12)]  # token, then the report


def test_pacing_spaces_calls_at_the_configured_rate(sim, clock):
    client = simulator_client(sim, clock, requests_per_second=20)
    for _ in range(4):
        client.get(report_path())
    # Token, then four calls: each waits out the rest of its 1/20 s (the fake clock only
    # moves when the client sleeps, so every wait is the whole interval).
    assert clock.sleeps == [0.05] * 4


def test_pacing_holds_in_real_time(sim):
    starts = []

    class RecordingSession(requests.Session):
        def request(self, method, url, **kwargs):
            starts.append(time.monotonic())
            return super().request(method, url, **kwargs)

    client = simulator_client(sim, None, requests_per_second=20, session=RecordingSession())
    for _ in range(4):
        client.get(report_path())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 4 and min(gaps) >= 0.049  # measured where we send, not where it lands


# -- typed errors ---------------------------------------------------------------------------------


def test_unknown_meeting_is_not_found_without_retries(sim, clock):
    client = simulator_client(sim, clock)
    with pytest.raises(NotFound, match="3001"):
        client.get(report_path("unknownUUID=="))
    assert sim.calls["participants"] == 1


def test_report_older_than_a_year_is_report_too_old(sim, clock):
    sim.dataset.too_old.add(UUID)
    client = simulator_client(sim, clock)
    with pytest.raises(ReportTooOld, match="12702"):
        client.get(report_path())


# -- paging ---------------------------------------------------------------------------------------


def test_report_is_read_with_page_size_300_and_next_page_token_only(sim, clock):
    client = simulator_client(sim, clock)
    pages = list(fetch_participants(client, UUID, "meeting"))
    assert [len(p.items) for p in pages] == [300, 300, 50]
    assert [p.number for p in pages] == [1, 2, 3]
    calls = [c for c in sim.log if c.endpoint == "participants"]
    assert [c.query.get("page_size") for c in calls] == ["300"] * 3
    assert all("page_number" not in c.query for c in calls)
    assert ["next_page_token" in c.query for c in calls] == [False, True, True]
    assert all(c.query["include_fields"] == "registrant_id" for c in calls)
    assert [p["user_id"] for page in pages for p in page.items] == [str(16778240 + i) for i in range(650)]


def test_expired_page_token_starts_the_listing_again(sim, clock, caplog):
    sim.add_fault("participants", "expired_page_token", page=3)
    client = simulator_client(sim, clock)
    with caplog.at_level(logging.WARNING):
        pages = list(fetch_participants(client, UUID, "meeting"))
    assert [(p.number, p.restarts) for p in pages] == [(1, 0), (2, 0), (1, 1), (2, 1), (3, 1)]
    assert sim.calls["participants"] == 6
    assert "page token expired" in caplog.text


def test_page_tokens_that_keep_expiring_give_up(sim, clock):
    sim.add_fault("participants", "expired_page_token", times=100)
    client = simulator_client(sim, clock)
    with pytest.raises(PageTokenExpired):
        list(fetch_participants(client, UUID, "meeting"))
    assert sim.calls["participants"] == 8  # 4 passes (3 restarts) of page 1 and a refused page 2


def test_a_page_token_loop_is_stopped(sim, clock):
    sim.add_fault("participants", "page_token_loop", times=100)
    client = simulator_client(sim, clock)
    with pytest.raises(PaginationError, match="same next_page_token twice"):
        list(fetch_participants(client, UUID, "meeting"))
    assert sim.calls["participants"] == 2


def test_double_encoded_uuid_reaches_its_report(clock):
    with ZoomSimulator(meeting_dataset(SLASHED_UUID, 5)) as sim:
        client = simulator_client(sim, clock)
        pages = list(fetch_participants(client, SLASHED_UUID, "meeting"))
        assert [len(p.items) for p in pages] == [5]
        assert "%252F%252F" in pages[0].url
        # Encoded once, Zoom's front end turns it back into "//" and routes elsewhere:
        once = f"{sim.api_base_url}/report/meetings/{quote(SLASHED_UUID, safe='')}/participants"
        answer = requests.get(once, headers={"Authorization": f"Bearer {client.token()}"}, timeout=5)
        assert answer.status_code == 404


def test_instances_and_registrants_listings(clock):
    dataset = synthetic_webinar(200, seed=7)
    webinar_id = next(iter(dataset.meetings))
    with ZoomSimulator(dataset) as sim:
        client = simulator_client(sim, clock)
        listing = fetch_instances(client, webinar_id, "webinar")
        assert [i["uuid"] for i in listing.items] == [i["uuid"] for i in dataset.instances[webinar_id]]
        with pytest.raises(NotFound):
            fetch_instances(client, webinar_id, "meeting")
        fetched = {
            status: [r["id"] for p in fetch_registrants(client, webinar_id, status) for r in p.items]
            for status in ("approved", "pending", "denied")
        }
    for status, ids in fetched.items():
        assert ids == [r["id"] for r in dataset.registrants[webinar_id] if r["status"] == status]
    assert sum(map(len, fetched.values())) == len(dataset.registrants[webinar_id])
