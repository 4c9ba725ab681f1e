"""Failed dashboard sign-ins are limited per client address (issue 15): token buckets, a stepped clock."""

from __future__ import annotations

import pytest

from integrations.web import create_app
from integrations.web.dashboard.login_limit import LoginLimiter
from tests.conftest import API_TOKEN
from tests.dashboard_support import csrf_from, dashboard_config


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ten_failures_at_once_then_one_every_six_seconds():
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(10):
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 6
    assert limiter.retry_after("10.0.0.2") == 0  # another client has its own bucket
    clock.now += 5.5
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 6
    clock.now += 60
    for _ in range(10):  # a full minute later: the whole burst again, not more
        assert limiter.retry_after("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 6


def test_many_addresses_are_forgotten_fullest_first_and_the_limited_are_kept():
    clock = Clock()
    limiter = LoginLimiter(clock=clock, max_clients=3)
    for _ in range(10):
        limiter.failed("attacker")
    for i in range(20):
        limiter.failed(f"10.0.1.{i}")
    assert len(limiter._buckets) == 3
    assert limiter.retry_after("attacker") == 6


@pytest.fixture
def dash(tmp_path):
    app = create_app(dashboard_config(tmp_path))
    clock = Clock()
    app.extensions["login_limiter"] = LoginLimiter(clock=clock)
    return app.test_client(), clock


def _post(client, password: str, address: str = "192.0.2.7"):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post(
        "/login", data={"csrf_token": token, "password": password}, environ_base={"REMOTE_ADDR": address}
    )


def test_the_eleventh_wrong_password_in_a_minute_is_a_429_saying_when_to_retry(dash):
    client, clock = dash
    for _ in range(10):
        assert _post(client, "guess").status_code == 401
    limited = _post(client, API_TOKEN)  # even the right password: not checked while limited
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "6"
    assert "Try again in 6 seconds." in limited.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not signed in
    other = client.application.test_client()
    assert _post(other, API_TOKEN, address="192.0.2.8").status_code == 302  # another client signs in
    clock.now += 6
    assert _post(client, API_TOKEN).status_code == 302


def test_right_passwords_and_expired_forms_take_no_tokens(dash):
    client, _ = dash
    for _ in range(12):
        assert _post(client, API_TOKEN).status_code == 302
        client.post("/logout", data={"csrf_token": csrf_from(client.get("/").get_data(as_text=True))})
    for _ in range(12):
        assert client.post("/login", data={"password": "guess"}).status_code == 400
    assert _post(client, API_TOKEN).status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client(tmp_path):
    app = create_app(dashboard_config(tmp_path, TRUST_PROXY_HEADERS="1"))
    app.extensions["login_limiter"] = LoginLimiter(clock=Clock())
    client = app.test_client()

    def post(password: str, forwarded: str):
        token = csrf_from(client.get("/login").get_data(as_text=True))
        data = {"csrf_token": token, "password": password}
        return client.post("/login", data=data, headers={"X-Forwarded-For": forwarded})

    for _ in range(10):
        assert post("guess", "198.51.100.1").status_code == 401
    assert post("guess", "198.51.100.1").status_code == 429
    assert post("guess", "198.51.100.2").status_code == 401  # the proxy's own address is not the bucket
