"""First run (issue 14): the startup banner says where the service is reached and what is set
(never a secret's value); a short API_TOKEN is refused with how to make one; instance UUIDs
are checked before they go into a URL; rejected webhooks are logged once per interval."""

from __future__ import annotations

import logging

import pytest

from integrations.banner import banner
from integrations.config import ConfigError
from integrations.web.webhooks import ThrottledLog
from integrations.zoom.client import InvalidUUID, encode_uuid
from tests.conftest import API_TOKEN, SECRET, make_config, post_event
from tests.test_hardening_input import one_line_error, worker


def test_the_banner_names_the_public_webhook_url_and_never_a_secret(tmp_path):
    config = make_config(
        tmp_path,
        PUBLIC_BASE_URL="https://attend.example.org/",
        ZOOM_ACCOUNT_ID="acc-id-value",
        ZOOM_CLIENT_ID="client-id-value",
        ZOOM_CLIENT_SECRET="client-secret-value",
    )
    text = banner(config, listen="127.0.0.1:8000")
    assert "https://attend.example.org/webhooks/zoom" in text
    assert "127.0.0.1:8000" in text and config.database_path in text and "-spool" in text
    assert "webhook secret token:  set" in text and "API token:             set" in text
    assert "Zoom API credentials:  set" in text and "30m,2h,24h" in text
    for secret in (SECRET, API_TOKEN, "acc-id-value", "client-id-value", "client-secret-value"):
        assert secret not in text
    bare = banner(make_config(tmp_path, API_TOKEN="", ZOOM_WEBHOOK_SECRET_TOKEN=""))
    assert (
        "is not public HTTPS: set PUBLIC_BASE_URL" in bare
        and "secret token:  NOT SET" in bare
        and "NOT SET (read API off" in bare
    )


def test_the_banner_uses_the_port_served_unless_public_base_url_is_set(tmp_path):
    local = make_config(tmp_path, PORT="9100")
    assert local.public_base_url == "http://127.0.0.1:9100" and not local.public_base_url_set
    text = banner(local.served_at(9200), listen="127.0.0.1:9200")
    assert "http://127.0.0.1:9200/webhooks/zoom" in text and "9100" not in text
    public = make_config(tmp_path, PORT="9100", PUBLIC_BASE_URL="https://attend.example.org").served_at(9200)
    assert public.public_base_url == "https://attend.example.org" and public.port == 9200
    text = banner(public, listen="127.0.0.1:9200")
    assert "Zoom webhook URL:      https://attend.example.org/webhooks/zoom" in text


@pytest.mark.parametrize("command", ["serve", "run"])
def test_the_started_banner_names_the_port_given_with_port(tmp_path, command):
    """Regression: with PUBLIC_BASE_URL unset the banner printed :8000 whatever --port said."""
    import signal

    from tests.fault_support import free_port, process_env, start_command
    from tests.test_hardening_signals import stop_with, wait_for_line

    env = process_env(tmp_path / "a.db")
    for name in ("PUBLIC_BASE_URL", "PORT"):
        env.pop(name, None)
    port = free_port()
    proc = start_command(command, env, "--port", str(port))
    wait_for_line(proc, f"Listening at: http://127.0.0.1:{port}")
    stop_with(proc, signal.SIGTERM)
    log = proc.log()
    assert f"Zoom webhook URL:      http://127.0.0.1:{port}/webhooks/zoom is not public HTTPS" in log
    assert "127.0.0.1:8000" not in log


def test_schedule_logs_the_banner(tmp_path):
    import signal

    from tests.fault_support import process_env, start_command
    from tests.test_hardening_signals import stop_with, wait_for_line

    proc = start_command("schedule", process_env(tmp_path / "a.db", PUBLIC_BASE_URL="https://attend.example.org"))
    wait_for_line(proc, "worker started")
    assert stop_with(proc, signal.SIGTERM) == 0
    log = proc.log()
    assert "attendance worker starting" in log and "schedule:" in log and str(tmp_path / "a.db") in log
    assert SECRET not in log and API_TOKEN not in log


@pytest.mark.parametrize("token", ["x", "a" * 31])
def test_a_short_api_token_is_refused_with_how_to_make_one(tmp_path, token):
    with pytest.raises(ConfigError, match=r"at least 32 characters.*secrets.token_urlsafe\(32\)"):
        make_config(tmp_path, API_TOKEN=token)
    line = one_line_error(worker("run", database=tmp_path / "a.db", env={"API_TOKEN": token}), 1, "API_TOKEN")
    assert "token_urlsafe" in line and token not in line.split("has")[0][-5:]
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("uuid", ["..", ".", "a/../b", "%2e%2e", "abc?x=1", "a#b", "", "x" * 129, "ab cd"])
def test_instance_uuids_that_would_change_the_url_are_refused(uuid):
    with pytest.raises(InvalidUUID):
        encode_uuid(uuid)


@pytest.mark.parametrize("uuid", ["Bznyg8KZTdCVbQxvS/oZ7w==", "//Xyz+AAAA/BB==", "4444AAAiAAAAAiAiAiiAii=="])
def test_real_instance_uuids_still_encode(uuid):
    assert "/" not in encode_uuid(uuid) and ".." not in encode_uuid(uuid)


def test_rejected_webhooks_are_logged_once_per_interval_with_a_count(client, caplog, monkeypatch):
    from integrations.web import webhooks

    now = [1000.0]
    monkeypatch.setattr(webhooks, "rejected_log", ThrottledLog(webhooks.log, 60, clock=lambda: now[0]))
    caplog.set_level(logging.WARNING, logger=webhooks.log.name)
    for _ in range(100):
        assert post_event(client, {"event": "x"}, secret="wrong").status_code == 401
    lines = [r.getMessage() for r in caplog.records if "rejected webhook" in r.getMessage()]
    assert len(lines) == 1
    now[0] += 61
    assert post_event(client, {"event": "x"}, secret="wrong").status_code == 401
    lines = [r.getMessage() for r in caplog.records if "rejected webhook" in r.getMessage()]
    assert len(lines) == 2 and "99 more" in lines[1]
