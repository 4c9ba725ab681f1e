"""Helpers for the certificate tests: a finished meeting with people above and below the rules."""

from __future__ import annotations

from pathlib import Path

from tests.attendance_support import Scenario
from tests.conftest import make_config

MEETING = "81234567890"
UUID = "certUUID1234567890abcd=="
BASE_URL = "https://certs.example.org"

# name, email, joined, left: minutes attended 60, 50, 30, 5
PEOPLE = [
    ("Zoë Ångström-Nøkleby", "zoe@example.org", "10:00", "11:00"),
    ("Παύλος Παπαδόπουλος", "pavlos@example.org", "10:05", "10:55"),
    ("Иван Петрович Ёлкин", "ivan@example.org", "10:10", "10:40"),
    ("Short Stay", "short@example.org", "10:50", "10:55"),
]


def certificate_config(tmp_path: Path, **overrides: str):
    """The test Config with a signing key path, a public base URL and a fast send rate."""
    settings = {
        "CERT_SIGNING_KEY_FILE": str(tmp_path / "signing-key.pem"),
        "PUBLIC_BASE_URL": BASE_URL,
        "CERT_SEND_PER_MINUTE": "60000",
        "CERT_VERIFY_PER_MINUTE": "1000",
    }
    settings.update(overrides)
    return make_config(tmp_path, **settings)


def finished_meeting(client, config) -> Scenario:
    """A meeting from 10:00 to 11:00 with the four PEOPLE, from signed webhooks."""
    sc = Scenario(client, config, meeting_id=MEETING, uuid=UUID)
    sc.started("10:00")
    for i, (name, email, joined, left) in enumerate(PEOPLE):
        sc.joined(f"u{i}", name, joined, email=email)
        sc.left(f"u{i}", name, left, email=email)
    sc.ended("11:00")
    return sc
