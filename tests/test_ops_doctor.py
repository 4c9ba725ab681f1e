"""`worker.py doctor` (issue 18) against the simulated Zoom over real HTTP, and the real app
behind real HTTPS for the public-URL check."""

from __future__ import annotations

import dataclasses
import json
import ssl
import threading

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

import worker
from integrations.cli import context
from integrations.simulator.zoom_api import ALL_SCOPES, ZoomSimulator
from integrations.web import create_app
from store.db import open_db
from store.migrations import migrate
from tests.conftest import SECRET, make_config
from tests.fault_support import free_port
from tests.tls_support import self_signed_certificate

STRONG_API_TOKEN = "Zq8-api-token-long-and-random-4f7Kx2Lm9Pw3"


@pytest.fixture
def simulator():
    with ZoomSimulator() as sim:
        yield sim


def run_doctor(monkeypatch, config, *args: str):
    # The service has run once: doctor checks a database, it never creates one.
    db = open_db(config.database_path)
    migrate(db)
    db.close()
    monkeypatch.setattr(context, "load_config", lambda: config)
    return CliRunner().invoke(worker.cli, ["doctor", *args], catch_exceptions=False)


def doctor_config(tmp_path, sim: ZoomSimulator, **overrides: str):
    return make_config(tmp_path, **(sim.environ() | {"API_TOKEN": STRONG_API_TOKEN} | overrides))


def lines(output: str) -> dict[str, str]:
    """Check name -> its line."""
    found = {}
    for line in output.splitlines():
        if ": " in line and not line.startswith(" "):
            mark_and_name = line.split(": ", 1)[0]
            found[mark_and_name[6:]] = line
    return found


def assert_no_secret(output: str, sim: ZoomSimulator) -> None:
    for secret in (sim.client_secret, SECRET, STRONG_API_TOKEN):
        assert secret not in output


def test_good_setup_passes_every_check_and_exits_0(tmp_path, monkeypatch, simulator):
    result = run_doctor(monkeypatch, doctor_config(tmp_path, simulator))
    assert result.exit_code == 0, result.output
    checks = lines(result.output)
    for name in (
        "webhook secret",
        "zoom credentials set",
        "database writable",
        "database integrity",
        "disk space",
        "zoom token",
        "scope report (participants)",
        "scope report (polls)",
        "scope webinar (past instances)",
        "scope webinar (registrants)",
        "scope meeting (past instances)",
        "clock",
    ):
        assert checks[name].startswith("ok  "), checks[name]
    assert checks["public webhook URL"].startswith("-") and "PUBLIC_BASE_URL not set" in checks["public webhook URL"]
    assert "FAIL" not in result.output
    assert result.output.rstrip().endswith("0 failed, 1 skipped")
    assert_no_secret(result.output, simulator)


def test_bad_credentials_fail_the_token_line_with_the_fix(tmp_path, monkeypatch, simulator):
    config = doctor_config(tmp_path, simulator, ZOOM_CLIENT_SECRET="not-the-secret")
    result = run_doctor(monkeypatch, config)
    assert result.exit_code == 1
    checks = lines(result.output)
    assert checks["zoom token"].startswith("FAIL  zoom token: Zoom rejected the Server-to-Server OAuth credentials")
    assert "fix: copy Account ID, Client ID and Client Secret" in result.output
    assert "scope report" not in result.output  # nothing more to ask Zoom without a token
    assert "not-the-secret" not in result.output
    assert_no_secret(result.output, simulator)


def test_a_missing_scope_names_the_api_and_the_scope_to_add(tmp_path, monkeypatch):
    with ZoomSimulator(scopes=ALL_SCOPES - {"webinar:read:admin"}) as sim:
        result = run_doctor(monkeypatch, doctor_config(tmp_path, sim), "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["zoom token"]["status"] == "ok"
    assert by_name["scope report (participants)"]["status"] == "ok"
    for name in ("scope webinar (past instances)", "scope webinar (registrants)"):
        assert by_name[name]["status"] == "failed"
        assert "403 (code 4711)" in by_name[name]["detail"]
        assert by_name[name]["fix"].startswith("add the scope webinar:read:admin")
    failed = [c["name"] for c in report["checks"] if c["status"] == "failed"]
    assert failed == ["scope webinar (past instances)", "scope webinar (registrants)"]


def test_an_unreachable_public_url_fails_its_line(tmp_path, monkeypatch, simulator):
    url = f"https://127.0.0.1:{free_port()}"
    result = run_doctor(monkeypatch, doctor_config(tmp_path, simulator, PUBLIC_BASE_URL=url))
    assert result.exit_code == 1
    line = lines(result.output)["public webhook URL"]
    assert line == f"FAIL  public webhook URL: {url}/webhooks/zoom unreachable (ConnectionError)"
    assert "fix: check DNS, the firewall and the reverse proxy" in result.output


def test_a_plain_http_public_url_is_refused(tmp_path, monkeypatch, simulator):
    result = run_doctor(monkeypatch, doctor_config(tmp_path, simulator, PUBLIC_BASE_URL="http://example.org"))
    assert result.exit_code == 1
    assert "is not HTTPS: Zoom posts only to https:// URLs" in lines(result.output)["public webhook URL"]


def test_a_clock_off_by_two_minutes_fails(tmp_path, monkeypatch):
    with ZoomSimulator(clock_offset=120) as sim:
        result = run_doctor(monkeypatch, doctor_config(tmp_path, sim))
    assert result.exit_code == 1
    assert "behind Zoom's Date header (limit 60s)" in lines(result.output)["clock"]
    assert "fix: enable time sync" in result.output


def test_weak_tokens_and_a_missing_secret_fail_configuration(tmp_path, monkeypatch, simulator):
    config = doctor_config(tmp_path, simulator, METRICS_TOKEN="a" * 40, ZOOM_WEBHOOK_SECRET_TOKEN="")
    # load_config refuses an API_TOKEN under 32 characters at start (issue 14); doctor still
    # judges whatever Config it is given.
    config = dataclasses.replace(config, api_token="short")
    result = run_doctor(monkeypatch, config)
    assert result.exit_code == 1
    checks = lines(result.output)
    assert checks["API_TOKEN"] == "FAIL  API_TOKEN: API_TOKEN is weak (5 characters, fewer than 32)"
    assert checks["METRICS_TOKEN"] == "FAIL  METRICS_TOKEN: METRICS_TOKEN is weak (only 1 distinct characters)"
    assert checks["webhook secret"].startswith("FAIL  webhook secret: ZOOM_WEBHOOK_SECRET_TOKEN is not set")
    assert "short" not in result.output.replace("API_TOKEN is weak", "")


# -- the public URL over real HTTPS ---------------------------------------------------------


@pytest.fixture
def https_app(tmp_path, monkeypatch):
    """The real app served over TLS on 127.0.0.1; doctor trusts its certificate via REQUESTS_CA_BUNDLE."""
    servers = []

    def serve(secret: str) -> str:
        cert, key = self_signed_certificate(tmp_path)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        app = create_app(make_config(tmp_path / f"served{len(servers)}", ZOOM_WEBHOOK_SECRET_TOKEN=secret))
        server = make_server("127.0.0.1", 0, app, threaded=True, ssl_context=tls)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        return f"https://127.0.0.1:{server.server_port}"

    (tmp_path / "served0").mkdir()
    (tmp_path / "served1").mkdir()
    yield serve
    for server in servers:
        server.shutdown()


def test_the_public_url_answers_a_signed_url_validation_over_https(tmp_path, monkeypatch, simulator, https_app):
    url = https_app(SECRET)
    result = run_doctor(monkeypatch, doctor_config(tmp_path, simulator, PUBLIC_BASE_URL=url))
    line = lines(result.output)["public webhook URL"]
    assert line.startswith(f"ok    public webhook URL: {url}/webhooks/zoom answers Zoom's endpoint.url_validation")
    assert result.exit_code == 0, result.output


def test_a_public_url_with_another_secret_fails(tmp_path, monkeypatch, simulator, https_app):
    url = https_app("the-server-has-another-secret")
    result = run_doctor(monkeypatch, doctor_config(tmp_path, simulator, PUBLIC_BASE_URL=url))
    assert result.exit_code == 1
    line = lines(result.output)["public webhook URL"]
    assert line == f"FAIL  public webhook URL: {url}/webhooks/zoom refused the signed challenge (HTTP 401)"
    assert "fix: the server there uses another ZOOM_WEBHOOK_SECRET_TOKEN than this configuration" in result.output
