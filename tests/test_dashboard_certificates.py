"""The dashboard's person page lists that person's certificates (issues 15 and 17): live, revoked, verify links."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from tests.certificates_support import MEETING, UUID, certificate_config, finished_meeting
from tests.dashboard_support import SECRET_KEY, links, sign_in


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path, SECRET_KEY=SECRET_KEY)


@pytest.fixture
def issued(client, config, runner_env):
    """The certificate tests' meeting, certificates issued at 30 minutes, Ivan's reissued with a corrected name."""
    finished_meeting(client, config)
    for args in (["certificates", "keygen"], ["certificates", "issue", MEETING, "--min-minutes", "30"]):
        assert runner_env(args).exit_code == 0
    rows = json.loads(runner_env(["certificates", "list", MEETING, "--format", "json"]).stdout)
    ivan = next(r for r in rows if r["email"] == "ivan@example.org")
    assert runner_env(["certificates", "reissue", str(ivan["number"]), "--name", "Иван Ёлкин-Смирнов"]).exit_code == 0
    assert sign_in(client).status_code == 302
    return json.loads(runner_env(["certificates", "list", MEETING, "--format", "json"]).stdout)


def _person_page(client, email: str) -> str:
    table = client.get(f"/attendance?uuid={quote(UUID, safe='')}&q={quote(email)}").get_data(as_text=True)
    [person] = links(table, "/person?")
    return client.get(person).get_data(as_text=True)


def _certificate_rows(html: str) -> list[tuple[str, str, str]]:
    """(number, status, verify href) of each row of the certificates table."""
    body = re.search(r'<table class="certificates">.*?</table>', html, re.S).group(0)
    return re.findall(
        r'<tr><td class="num">(\d+)</td>\s*<td><span class="badge[^"]*">(live|revoked)</span>.*?href="([^"]+)"',
        body,
        re.S,
    )


def test_person_page_lists_live_and_revoked_certificates_with_verify_links(client, issued):
    ivan = sorted((r for r in issued if r["email"] == "ivan@example.org"), key=lambda r: -r["number"])
    html = _person_page(client, "ivan@example.org")
    assert "Certificates (2)" in html
    assert _certificate_rows(html) == [
        (str(ivan[0]["number"]), "live", f"/verify/{ivan[0]['code']}"),
        (str(ivan[1]["number"]), "revoked", f"/verify/{ivan[1]['code']}"),
    ]
    assert "Иван Ёлкин-Смирнов" in html and ivan[0]["issued"] in html
    page = client.get(f"/verify/{ivan[1]['code']}")  # the link opens the public verification page
    assert page.status_code == 200 and "revoked" in page.get_data(as_text=True).lower()


def test_person_without_a_certificate_says_so(client, issued):
    html = _person_page(client, "short@example.org")  # 5 minutes: below the 30 of the rules
    assert "Certificates (0)" in html and "No certificate issued to this person" in html
    zoe = next(r for r in issued if r["email"] == "zoe@example.org")
    assert _certificate_rows(_person_page(client, "zoe@example.org")) == [
        (str(zoe["number"]), "live", f"/verify/{zoe['code']}")
    ]
