"""Certificates from the funnel (issues 16 and 17): `attended` and `passed` under the stored
rules, one-run overrides recorded, and no second certificate for anyone issued before the switch."""

from __future__ import annotations

import json

import pytest

from integrations.certificates.eligibility import Eligible
from integrations.certificates.issue import issue_to_eligible
from integrations.certificates.keys import read_key
from integrations.funnel import people_at_stage
from integrations.reports.sync import sync_meeting
from integrations.simulator.zoom_api import ZoomSimulator
from store import attendance_queries as queries
from store.attendance_queries import Threshold
from store.db import open_db
from tests.attendance_support import Scenario
from tests.certificates_support import MEETING, PEOPLE, UUID, certificate_config, finished_meeting
from tests.funnel_support import MIN_MINUTES, PASS_PERCENT, WEBINAR, scenario
from tests.zoom_support import FakeClock, simulator_client

NOW = 1_900_000_000  # long after both scenarios ended


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def issued(db, meeting):
    """meeting's live certificates: email -> (person_key, score, rules); every email distinct."""
    rows = db.execute(
        "SELECT email, person_key, score, rules FROM certificates WHERE meeting_id = ? AND revoked_at IS NULL",
        [meeting],
    ).fetchall()
    out = {r[0]: (r[1], r[2], json.loads(r[3])) for r in rows}
    assert len(out) == len(rows)
    return out


def keys(db, meeting):
    """The person_key of every certificate of meeting, revoked or not."""
    return [k for (k,) in db.execute("SELECT person_key FROM certificates WHERE meeting_id = ?", [meeting])]


@pytest.fixture
def quiz(db, runner_env):
    """The generated funnel scenario (400 people, a quiz) synced over HTTP, a signing key made."""
    sc = scenario(400)
    with ZoomSimulator(sc.dataset) as sim:
        sync_meeting(db, simulator_client(sim, FakeClock()), WEBINAR)
    ok(runner_env(["certificates", "keygen"]))
    return sc


def test_passed_issues_only_to_people_who_attended_and_passed_with_their_score(db, runner_env, quiz):
    ok(runner_env(["rules", WEBINAR, "--min-minutes", str(MIN_MINUTES), "--pass-percent", str(PASS_PERCENT)]))
    result = ok(runner_env(["certificates", "issue", WEBINAR, "--stage", "passed"]))
    n = len(quiz.people["passed"])
    assert f"issued {n} certificates for meeting {WEBINAR} (eligible {n}," in result.stdout
    certificates = issued(db, WEBINAR)
    assert set(certificates) == quiz.people["passed"]
    assert quiz.people["passed"] < quiz.people["attended"] & quiz.people["answered"]  # some attended and failed
    _, funnel = people_at_stage(db, WEBINAR, "passed")
    for p in funnel:
        key, score, rules = certificates[p["email"]]
        assert key == p["person_key"] and score == f"{p['score_percent']:g}%"
        assert p["score_percent"] >= PASS_PERCENT and p["attended_minutes"] >= MIN_MINUTES
        assert rules["stage"] == "passed" and rules["pass_percent"] == PASS_PERCENT
        assert rules["min_minutes"] == MIN_MINUTES and rules["version"] == 1 and rules["overridden"] == []
    # Idempotent: a second run issues nothing.
    assert "issued 0 certificates" in ok(runner_env(["certificates", "issue", WEBINAR, "--stage", "passed"])).stdout


def test_attended_follows_the_stored_rules(db, runner_env, quiz):
    ok(runner_env(["rules", WEBINAR, "--min-minutes", str(MIN_MINUTES)]))
    ok(runner_env(["certificates", "issue", WEBINAR]))
    certificates = issued(db, WEBINAR)
    assert set(certificates) == quiz.people["attended"]
    # The score is stored when the person took the quiz, and only then.
    took = {email for email, (_, score, _) in certificates.items() if score is not None}
    assert took == quiz.people["attended"] & quiz.people["answered"]
    assert {r["min_minutes"] for _, _, r in certificates.values()} == {MIN_MINUTES}


def test_the_funnel_names_each_attendee_by_the_attendance_engines_key(db, quiz):
    ok_rules = {"min_minutes": MIN_MINUTES, "pass_percent": PASS_PERCENT}
    engine = queries.attendance(db, queries.resolve_instance(db, WEBINAR), now=NOW, threshold=Threshold())
    keys = {a["person_key"] for a in engine["attendees"]}
    _, joined = people_at_stage(db, WEBINAR, "joined", overrides=ok_rules, now=NOW)
    assert {p["person_key"] for p in joined} == keys and len(joined) == len(keys)
    _, answered = people_at_stage(db, WEBINAR, "answered", overrides=ok_rules, now=NOW)
    # Those who answered without ever joining have no key; none of them attended.
    assert all(p["person_key"] is None and not p["attended"] for p in answered if not p["joined"])
    assert any(not p["joined"] for p in answered)


def test_certificates_issued_before_the_switch_are_not_issued_again(db, config, runner_env, quiz):
    # What the old eligibility issued: the attendance engine's people with a command-line minimum.
    uuid = queries.resolve_instance(db, WEBINAR)
    threshold = Threshold(min_minutes=MIN_MINUTES)
    engine = queries.attendance(db, uuid, now=NOW, threshold=threshold)
    old = [
        {**{k: a[k] for k in ("person_key", "name", "email", "attended_seconds")}, "score": None}
        for a in engine["attendees"]
        if a["eligible"]
    ]
    old_rules = {"stage": "attended", "threshold": threshold.describe(), "source": "attendance"}
    key = read_key(config.cert_signing_key_file)
    before = issue_to_eligible(db, Eligible(old_rules, engine["meeting"], old), key=key)
    assert len(before.issued) == len(quiz.people["attended"])

    ok(runner_env(["rules", WEBINAR, "--min-minutes", str(MIN_MINUTES), "--pass-percent", str(PASS_PERCENT)]))
    for stage in ("attended", "passed"):
        result = ok(runner_env(["certificates", "issue", WEBINAR, "--stage", stage]))
        assert "issued 0 certificates" in result.stdout
    # A lower minimum for one run adds only the people it lets in.
    result = ok(runner_env(["certificates", "issue", WEBINAR, "--min-minutes", "45"]))
    added = len(keys(db, WEBINAR)) - len(before.issued)
    assert added > 0 and f"issued {added} certificates" in result.stdout
    assert f"already had one {len(before.issued)}," in result.stdout
    assert len(keys(db, WEBINAR)) == len(set(keys(db, WEBINAR)))


def test_an_override_applies_to_one_run_and_is_recorded(client, config, runner_env):
    finished_meeting(client, config)  # 60, 50, 30 and 5 minutes
    ok(runner_env(["certificates", "keygen"]))
    ok(runner_env(["rules", MEETING, "--min-minutes", "55"]))
    ok(runner_env(["certificates", "issue", MEETING]))
    result = ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    assert "overridden for this run: min_minutes" in result.stderr
    ok(runner_env(["certificates", "issue", MEETING]))  # the stored rules again: nobody new
    db = open_db(config.database_path)
    rows = issued(db, MEETING)
    assert set(rows) == {p[1] for p in PEOPLE[:3]}
    assert rows["zoe@example.org"][2] == {
        "stage": "attended",
        "source": "funnel",
        "min_minutes": 55.0,
        "min_percent": None,
        "pass_percent": None,
        "version": 1,
        "set_at": rows["zoe@example.org"][2]["set_at"],
        "overridden": [],
    }
    for email in ("pavlos@example.org", "ivan@example.org"):
        rules = rows[email][2]
        assert rules["min_minutes"] == 30 and rules["overridden"] == ["min_minutes"] and rules["version"] == 1
    assert all(score is None for _, score, _ in rows.values())  # no quiz: no score


def test_a_live_instance_gets_no_certificates(client, config, runner_env):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=UUID)
    sc.started("10:00")
    sc.joined("u0", "Zoë", "10:00", email="zoe@example.org")
    ok(runner_env(["certificates", "keygen"]))
    result = runner_env(["certificates", "issue", MEETING, "--min-minutes", "0"])
    assert result.exit_code == 1
    assert result.output == f"Error: instance {UUID} has not ended: issue certificates once it is over\n"


def test_with_no_minimum_nobody_gets_a_certificate_for_zero_seconds(client, config, runner_env):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=UUID)
    sc.started("10:00")
    sc.joined("u0", "Zoë", "10:00", email="zoe@example.org")
    sc.joined("u1", "Blink", "10:30", email="blink@example.org")
    sc.left("u1", "Blink", "10:30", email="blink@example.org")  # joined and left in the same second
    sc.left("u0", "Zoë", "11:00", email="zoe@example.org")
    sc.ended("11:00")
    ok(runner_env(["certificates", "keygen"]))
    ok(runner_env(["certificates", "issue", MEETING]))  # no rules stored: everyone who joined attended
    assert set(issued(open_db(config.database_path), MEETING)) == {"zoe@example.org"}
