"""A phone number is not a name: dial-in callers (Zoom names them by their number) get no certificate."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.certificates import issue as issuing
from integrations.certificates.names import is_phone_number
from tests.attendance_support import Scenario
from tests.certificates_support import MEETING, UUID, certificate_config

PHONE = "+1 555 0111"


@pytest.mark.parametrize(
    "name",
    ["+1 555 0111", "15550111", "+44 (0)20 7946 0958", "020.7946.0958", "+1 669 *** 0111", " 555-0111-22 ", "٠١٢٣٤٥٦"],
)
def test_phone_numbers_are_not_names(name):
    assert is_phone_number(name)


@pytest.mark.parametrize(
    "name",
    ["Ana Kowalski", "", None, "Room 101", "12345", "+1 555", "Agent 007 555 0111", "iPhone 15550111", "Zoë"],
)
def test_names_and_short_numbers_are_names(name):
    assert not is_phone_number(name)


@given(st.text(), st.characters(categories=["L"]), st.text())
def test_anything_with_a_letter_other_than_x_is_a_name(before, letter, after):
    if letter.lower() != "x":  # x marks an extension or a masked digit
        assert not is_phone_number(before + letter + after)


@given(st.lists(st.sampled_from("0123456789"), min_size=6, max_size=15), st.lists(st.sampled_from(" +-().")))
def test_six_digits_with_any_separators_are_a_phone_number(digits, separators):
    mixed = "".join(d + (separators[i] if i < len(separators) else "") for i, d in enumerate(digits))
    assert is_phone_number(mixed)


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


@pytest.fixture
def meeting(client, config, runner_env):
    """A finished meeting: one named attendee and one dial-in caller named by their number."""
    sc = Scenario(client, config, meeting_id=MEETING, uuid=UUID)
    sc.started("10:00")
    for user, name in (("u0", "Ana Kowalski"), ("u1", PHONE)):
        sc.joined(user, name, "10:00")
        sc.left(user, name, "11:00")
    sc.ended("11:00")
    assert runner_env(["certificates", "keygen"]).exit_code == 0
    return config


def listed(runner_env):
    return json.loads(runner_env(["certificates", "list", MEETING, "--format", "json"]).stdout)


def test_a_dial_in_caller_is_skipped_and_reported(meeting, runner_env):
    result = runner_env(["certificates", "issue", MEETING])
    assert result.exit_code == 0, result.output
    assert "issued 1 certificates" in result.stdout
    assert "(eligible 2, already had one 0, without a name 0, a phone number as name 1)" in result.stdout
    assert [r["name"] for r in listed(runner_env)] == ["Ana Kowalski"]


def test_reissue_refuses_a_phone_number_as_the_corrected_name(meeting, runner_env):
    assert runner_env(["certificates", "issue", MEETING]).exit_code == 0
    result = runner_env(["certificates", "reissue", "1", "--name", "+1 (555) 011-1222"])
    assert result.exit_code == 2 and "phone number" in result.output
    assert [r["revoked"] for r in listed(runner_env)] == [None]


def test_a_certificate_issued_earlier_to_a_phone_number_stays_verifiable_and_is_reported(
    meeting, runner_env, client, monkeypatch
):
    with monkeypatch.context() as before_the_fix:
        before_the_fix.setattr(issuing, "why_no_name", lambda name: None if name else "without a name")
        assert runner_env(["certificates", "issue", MEETING]).exit_code == 0
    [phone] = [r for r in listed(runner_env) if r["name"] == PHONE]

    again = runner_env(["certificates", "issue", MEETING])
    assert again.exit_code == 0 and "issued 0 certificates" in again.stdout
    assert "warning: 1 live certificates print a phone number as the name" in again.stderr
    assert f"certificates {phone['number']};" in again.stderr
    # History is not rewritten: the code still verifies, until the organizer revokes it.
    assert client.get(f"/api/certificates/{phone['code']}").get_json()["valid"] is True
    assert runner_env(["certificates", "revoke", str(phone["number"]), "--reason", "phone number"]).exit_code == 0
    assert "warning" not in runner_env(["certificates", "issue", MEETING]).stderr
