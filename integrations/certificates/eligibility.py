"""Who gets a certificate: the people at a stage of the funnel (issue 16) for one instance.

The one place that decides eligibility. It asks the funnel (`people_at_stage`), so a
certificate follows the same stored rules as `funnel` and `attendance`; options given for
one run override them and are recorded with every certificate issued in that run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integrations.funnel import people_at_stage
from store.attendance_queries import BadQuery, meeting_info
from store.db import Store

STAGES = ("attended", "passed")


class NotEligibleYet(Exception):
    "Certificates cannot be issued for this stage or instance yet"


@dataclass(frozen=True)
class Eligible:
    """The rules applied, the instance they were applied to, and the people who meet them."""

    rules: dict[str, Any]
    meeting: dict[str, Any]
    people: list[dict[str, Any]]


def _score(person: Mapping[str, Any]) -> str | None:
    """The quiz score a certificate prints: the funnel's percent, none when no quiz was taken."""
    if not person.get("answered_quiz") or person.get("score_percent") is None:
        return None
    return f"{person['score_percent']:g}%"


def eligible_people(
    db: Store,
    uuid: str,
    stage: str,
    *,
    overrides: Mapping[str, float | None] | None = None,
    now: int,
) -> Eligible:
    """People at `stage` of instance `uuid`: person_key, name, email, attended_seconds, score."""
    if stage not in STAGES:
        raise NotEligibleYet(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    info = meeting_info(db, uuid, now=now)
    if not info["ended"]:
        # Minutes still grow while it is live: a certificate would print a number that changes.
        raise NotEligibleYet(f"instance {uuid} has not ended: issue certificates once it is over")
    try:
        rules, people = people_at_stage(db, uuid, stage, overrides=overrides, now=now)
    except BadQuery as e:
        if stage == "passed" and "no stage 'passed'" in str(e):
            raise NotEligibleYet(
                f"stage 'passed' needs a pass percent: store one with `worker.py rules {info['meeting_id']} "
                "--pass-percent P` or give --pass-percent"
            ) from None
        raise
    eligible = [
        {
            "person_key": p["person_key"],
            "name": p["name"],
            "email": p["email"],
            "attended_seconds": p["attended_seconds"],
            "score": _score(p),
        }
        for p in people
        # Both stages need attendance, so everyone here was seen in the meeting and has a key;
        # with no minimum stored, `attended` is everyone who joined: a certificate needs a second.
        if p["person_key"] is not None and p["attended_seconds"]
    ]
    return Eligible({"stage": stage, "source": "funnel", **rules}, info, eligible)
