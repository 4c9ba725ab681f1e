"""Emailing certificates (issue 17) to a real SMTP server (aiosmtpd), through a crash mid-send."""

from __future__ import annotations

import asyncio
import base64
import email
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from store.db import open_db
from tests.certificates_support import MEETING, PEOPLE, certificate_config, finished_meeting
from tests.tls_support import self_signed_certificate

ROOT = Path(__file__).resolve().parents[1]


class Recorder:
    """An SMTP handler keeping every accepted message; it can stall before answering one DATA."""

    def __init__(self, stall_on: int | None = None, refuse: str | None = None):
        self.messages: list[email.message.Message] = []
        self.stall_on = stall_on
        self.refuse = refuse
        self.stalled = threading.Event()
        self.release = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content))
        if len(self.messages) == self.stall_on:
            # The message is in; the sender is killed before it reads our 250: the in-doubt case.
            self.stalled.set()
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    servers = []

    def start(recorder: Recorder, **server_options) -> int:
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **server_options)
        controller.start()
        servers.append(controller)
        return port

    yield start
    for controller in servers:
        controller.stop()


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


def environment(config, port: int, **smtp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "CERT_", "DATABASE_", "LOG_"))}
    env.update(
        DATABASE_URL=f"sqlite:///{config.database_path}",
        CERT_SIGNING_KEY_FILE=config.cert_signing_key_file,
        PUBLIC_BASE_URL=config.public_base_url,
        CERT_SEND_PER_MINUTE="60000",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(port),
        SMTP_FROM="Certificates <certificates@example.net>",
        SMTP_STARTTLS="false",
    )
    env.update(smtp)
    return env


def send(config, port: int, **smtp: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "worker.py", "certificates", "send", MEETING],
        cwd=ROOT,
        env=environment(config, port, **smtp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def issued(client, config, runner_env):
    finished_meeting(client, config)
    for args in (["certificates", "keygen"], ["certificates", "issue", MEETING]):
        result = runner_env(args)
        assert result.exit_code == 0, result.output
    return config


def statuses(config) -> dict[int, list[str]]:
    db = open_db(config.database_path)
    try:
        out: dict[int, list[str]] = {}
        for number, status in db.execute("SELECT number, status FROM certificate_sends ORDER BY id"):
            out.setdefault(number, []).append(status)
        return out
    finally:
        db.close()


def test_send_survives_a_crash_mid_send_without_a_second_email(issued, smtp):
    recorder = Recorder(stall_on=2)
    port = smtp(recorder)
    first = send(issued, port)
    try:
        assert recorder.stalled.wait(60), first.communicate(timeout=5)
        first.send_signal(signal.SIGKILL)  # between the server's acceptance and our 'sent'
        first.communicate(timeout=10)  # reaps it and closes its pipes
    finally:
        recorder.release.set()
    assert len(recorder.messages) == 2
    assert sorted(s for v in statuses(issued).values() for s in v) == ["sending", "sent"]

    second = send(issued, port)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert "sent 2, refused 0, failed 0" in out
    assert "in doubt (not resent): 1" in err

    recipients = [m["To"] for m in recorder.messages]
    assert sorted(recipients) == sorted(p[1] for p in PEOPLE)  # each person exactly one email
    assert len(set(m["Message-ID"] for m in recorder.messages)) == 4
    final = statuses(issued)
    assert sorted(s for v in final.values() for s in v) == ["in_doubt", "sent", "sent", "sent"]

    # A third run sends nobody anything.
    third = send(issued, port)
    out, _ = third.communicate(timeout=60)
    assert "sent 0," in out and len(recorder.messages) == 4


def test_each_email_carries_its_pdf_and_a_refusal_is_recorded_with_the_answer(issued, smtp):
    recorder = Recorder(refuse="short@example.org")
    port = smtp(recorder)
    run = send(issued, port)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "sent 3, refused 1" in out
    by_to = {m["To"]: m for m in recorder.messages}
    zoe = by_to["zoe@example.org"]
    attachment = next(part for part in zoe.walk() if part.get_content_type() == "application/pdf")
    assert attachment.get_payload(decode=True).startswith(b"%PDF-")
    assert "/verify/" in next(part for part in zoe.walk() if part.get_content_type() == "text/plain").get_payload()
    db = open_db(issued.database_path)
    try:
        refused = db.execute("SELECT response FROM certificate_sends WHERE status = 'refused'").fetchone()[0]
    finally:
        db.close()
    assert refused.startswith("550") and "mailbox unavailable" in refused
    listed = json.loads(
        subprocess.run(
            [sys.executable, "worker.py", "certificates", "list", MEETING, "--format", "json"],
            cwd=ROOT,
            env=environment(issued, port),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert sum(1 for r in listed if r["sent"]) == 3


# --- STARTTLS and AUTH -------------------------------------------------------------------------

USERNAME = "certificates-sender"
PASSWORD = "s3cret-Pässword-never-logged"  # non-ASCII: smtplib's own login cannot send it
ACCOUNTS = {USERNAME: PASSWORD, "ascii-sender": "s3cret-password-never-logged"}


class Logins:
    """An aiosmtpd authenticator for one user; it notes each attempt and whether TLS was on."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, bool, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.password == ACCOUNTS.get(auth_data.login.decode(), "").encode()
        self.attempts.append((auth_data.login.decode(), session.ssl is not None, ok))
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


@pytest.fixture
def tls_server(tmp_path, smtp):
    """Start an SMTP server that requires STARTTLS and AUTH; (port, recorder, logins, CA file)."""
    cert_file, key_file = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    recorder, logins = Recorder(), Logins()
    port = smtp(recorder, tls_context=context, require_starttls=True, authenticator=logins, auth_required=True)
    return port, recorder, logins, cert_file


def secret_forms(username: str = USERNAME, password: str = PASSWORD) -> list[str]:
    """The password as it could leak: plain, and inside AUTH PLAIN's or AUTH LOGIN's base64."""
    plain = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]


def all_recorded(config) -> str:
    db = open_db(config.database_path)
    try:
        return json.dumps(db.execute("SELECT * FROM certificate_sends").fetchall())
    finally:
        db.close()


@pytest.mark.parametrize("username", sorted(ACCOUNTS))
def test_starttls_verified_against_smtp_ca_file_then_login_then_every_certificate_is_sent(issued, tls_server, username):
    port, recorder, logins, ca_file = tls_server
    password = ACCOUNTS[username]
    run = send(
        issued,
        port,
        SMTP_STARTTLS="true",
        SMTP_CA_FILE=str(ca_file),
        SMTP_USERNAME=username,
        SMTP_PASSWORD=password,
        LOG_LEVEL="DEBUG",
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert "sent 4, refused 0, failed 0" in out
    assert sorted(m["To"] for m in recorder.messages) == sorted(p[1] for p in PEOPLE)
    # One login, over TLS, accepted: the connection is kept for every message.
    assert logins.attempts == [(username, True, True)]
    for secret in secret_forms(username, password):
        assert secret not in out + err
        assert secret not in all_recorded(issued)


def test_a_server_whose_certificate_is_not_trusted_gets_no_password_and_no_mail(issued, tls_server):
    port, recorder, logins, _ = tls_server
    # No SMTP_CA_FILE: the system's CAs do not know the test's self-signed certificate.
    run = send(issued, port, SMTP_STARTTLS="true", SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert err.startswith("Error: SMTP server 127.0.0.1:") and "CERTIFICATE_VERIFY_FAILED" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback
    assert logins.attempts == [] and recorder.messages == []
    assert statuses(issued) == {}  # nothing was attempted, so the next run sends everyone
    for secret in secret_forms():
        assert secret not in out + err


def test_a_wrong_password_ends_the_run_with_the_servers_answer_and_is_not_echoed(issued, tls_server):
    port, recorder, logins, ca_file = tls_server
    wrong = "wrong-" + PASSWORD
    run = send(
        issued, port, SMTP_CA_FILE=str(ca_file), SMTP_STARTTLS="true", SMTP_USERNAME=USERNAME, SMTP_PASSWORD=wrong
    )
    out, err = run.communicate(timeout=120)
    assert run.returncode == 1
    assert "535" in err and len(err.strip().splitlines()) == 1
    assert [(user, tls) for user, tls, _ in logins.attempts] == [(USERNAME, True)]
    assert recorder.messages == [] and statuses(issued) == {}
    assert wrong not in out + err and PASSWORD not in out + err


def test_an_unreadable_smtp_ca_file_is_one_line(issued, tls_server, tmp_path):
    port, _, _, _ = tls_server
    run = send(issued, port, SMTP_STARTTLS="true", SMTP_CA_FILE=str(tmp_path / "missing.pem"))
    _, err = run.communicate(timeout=60)
    assert run.returncode == 1
    assert err.strip().splitlines() == [err.strip()] and "SMTP_CA_FILE" in err
