"""Emailing certificates (issue 17) to a real SMTP server (aiosmtpd), through a crash mid-send."""

from __future__ import annotations

import asyncio
import email
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from store.db import open_db
from tests.certificates_support import MEETING, PEOPLE, certificate_config, finished_meeting

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

    def start(recorder: Recorder) -> int:
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port)
        controller.start()
        servers.append(controller)
        return port

    yield start
    for controller in servers:
        controller.stop()


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


def environment(config, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "CERT_", "DATABASE_"))}
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
    return env


def send(config, port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "worker.py", "certificates", "send", MEETING],
        cwd=ROOT,
        env=environment(config, port),
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
