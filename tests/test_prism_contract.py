"""Contract: every request the report poller sends is valid against Zoom's own OpenAPI document.

Prism (`@stoplight/prism-cli`, installed by .ci/run) serves ../shared/zoom/meetings-api.openapi.json
and answers 400 with an `sl-violations` header to any request the document does not allow
(issue 3). The access token comes from the simulator: the document has no token endpoint.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from integrations.demo.processes import stop_process_group
from integrations.simulator.zoom_api import ZoomSimulator
from integrations.zoom.client import PaginationError, ZoomApiError
from integrations.zoom.polls import answer_rows, fetch_poll_definitions, fetch_poll_report, poll_to_rows
from integrations.zoom.reports import (
    REGISTRANT_STATUSES,
    fetch_instances,
    fetch_participants,
    fetch_registrants,
    participant_to_row,
    registrant_to_row,
)
from tests.conftest import SHARED
from tests.zoom_support import FakeClock, simulator_client

REPO = Path(__file__).resolve().parents[1]
DOCUMENT = SHARED / "zoom" / "meetings-api.openapi.json"
PRISM_CANDIDATES = (REPO / ".prism" / "node_modules" / ".bin" / "prism", Path("/tmp/prismtest/node_modules/.bin/prism"))
UUIDS = ("4444AAAiAAAAAiAiAiiAii==", "/ukAAAA//BB+cc==")  # the second needs double encoding
STARTUP_SECONDS = 90


def prism_binary() -> Path:
    for candidate in PRISM_CANDIDATES:
        if candidate.exists():
            return candidate
    pytest.fail(
        "Prism is not installed: run `npm install --prefix .prism --no-save @stoplight/prism-cli@5` "
        f"(looked for {', '.join(map(str, PRISM_CANDIDATES))})"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prism_url(tmp_path_factory):
    assert DOCUMENT.exists(), f"Zoom's OpenAPI document is missing: {DOCUMENT}"
    binary = prism_binary()
    port = free_port()
    log_path = tmp_path_factory.mktemp("prism") / "prism.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(binary), "mock", "-h", "127.0.0.1", "-p", str(port), str(DOCUMENT)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it stops node too
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"Prism exited with {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                requests.get(url + "/past_meetings/1/instances", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail(f"Prism did not listen within {STARTUP_SECONDS}s: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        stop_process_group(process, timeout=10)


@pytest.fixture
def zoom(prism_url):
    """A client whose token comes from the simulator and whose API calls go to Prism."""
    with ZoomSimulator() as sim:
        client = simulator_client(sim, FakeClock(), api_base_url=prism_url, max_retries=0)
        answers: list[requests.Response] = []
        client.session.hooks["response"].append(lambda response, *args, **kwargs: answers.append(response))
        client.answers = answers  # type: ignore[attr-defined]
        yield client
        client.close()


def api_answers(client) -> list[tuple[int, str | None]]:
    """(status, sl-violations) of every answer Prism gave (the token's answer excluded)."""
    return [(r.status_code, r.headers.get("sl-violations")) for r in client.answers if "/oauth/token" not in r.url]


@pytest.mark.parametrize("kind", ["meeting", "webinar"])
@pytest.mark.parametrize("uuid", UUIDS)
def test_participant_report_requests_are_valid(zoom, kind, uuid):
    pages = []
    # Prism answers the document's example, whose next_page_token never changes: the loop
    # guard stops the listing after the second request, which Prism has validated too.
    with pytest.raises(PaginationError):
        for page in fetch_participants(zoom, uuid, kind):
            pages.append(page)
    assert api_answers(zoom) == [(200, None), (200, None)]
    assert "page_size=300" in pages[0].url and "include_fields=registrant_id" in pages[0].url
    assert "next_page_token=" in pages[1].url
    rows = [participant_to_row(p) for p in pages[0].items]
    assert rows and rows[0]["user_email"] and rows[0]["join_time"].endswith("Z")


@pytest.mark.parametrize("kind", ["meeting", "webinar"])
def test_instances_requests_are_valid(zoom, kind):
    listing = fetch_instances(zoom, "85012345678", kind)
    assert api_answers(zoom) == [(200, None)]
    assert listing.items and listing.items[0]["uuid"]


@pytest.mark.parametrize("status", REGISTRANT_STATUSES)
def test_registrants_requests_are_valid(zoom, status):
    pages = []
    with pytest.raises(PaginationError):
        for page in fetch_registrants(zoom, "85012345678", status):
            pages.append(page)
    assert api_answers(zoom) == [(200, None), (200, None)]
    assert f"status={status}" in pages[0].url
    assert registrant_to_row(pages[0].items[0], "85012345678")["registrant_id"]


@pytest.mark.parametrize("kind", ["meeting", "webinar"])
def test_poll_definition_requests_are_valid(zoom, kind):
    page = fetch_poll_definitions(zoom, "85012345678", kind)
    assert api_answers(zoom) == [(200, None)]
    poll, questions = poll_to_rows(page.items[0], "85012345678")
    assert poll is not None and poll["poll_id"] and questions and questions[0]["question"]


@pytest.mark.parametrize("kind", ["meeting", "webinar"])
@pytest.mark.parametrize("uuid", UUIDS)
def test_poll_report_requests_are_valid(zoom, kind, uuid):
    page = fetch_poll_report(zoom, uuid, kind)
    assert api_answers(zoom) == [(200, None)]
    rows = answer_rows(page.items)
    assert rows and rows[0]["email"] and rows[0]["poll_id"] and rows[0]["question"]


def test_prism_refuses_requests_the_document_does_not_allow(zoom):
    """The control: without it, the tests above could pass against a server that accepts anything."""
    with pytest.raises(ZoomApiError) as too_big:
        zoom.get("report/meetings/abc/participants", {"page_size": 301})
    with pytest.raises(ZoomApiError) as not_a_number:
        zoom.get("past_webinars/not-a-number/instances")
    assert too_big.value.status == 400 and not_a_number.value.status == 400
    violations = [v for _, v in api_answers(zoom)]
    assert "page_size must be <= 300" in violations[0]
    assert "must be integer" in violations[1]


def test_missing_prism_fails_loudly_instead_of_skipping(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "PRISM_CANDIDATES", (tmp_path / "no-prism",))
    with pytest.raises(pytest.fail.Exception, match="Prism is not installed: run `npm install"):
        prism_binary()
