"""Who gets a certificate: the people at a stage of the funnel (issue 16) for one instance.

The one place that decides eligibility. Until the funnel (stored per-meeting rules, quiz
scores) lands, `attended` applies a Threshold given on the command line to the attendance
engine's numbers, and `passed` is refused: it needs quiz results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from store import attendance_queries as queries
from store.attendance_queries import Threshold
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


def eligible_people(db: Store, uuid: str, stage: str, *, threshold: Threshold | None = None, now: int) -> Eligible:
    """People at `stage` of instance `uuid`: person_key, name, email, attended_seconds, score."""
    if stage not in STAGES:
        raise NotEligibleYet(f"unknown stage {stage!r}: choose one of {', '.join(STAGES)}")
    if stage == "passed":
        raise NotEligibleYet("stage 'passed' needs quiz results (funnel, issue 16), which this version does not store")
    threshold = threshold or Threshold()
    result = queries.attendance(db, uuid, now=now, threshold=threshold)
    info = result["meeting"]
    if not info["ended"]:
        # Minutes still grow while it is live: a certificate would print a number that changes.
        raise NotEligibleYet(f"instance {uuid} has not ended: issue certificates once it is over")
    people = [
        {
            "person_key": a["person_key"],
            "name": a["name"],
            "email": a["email"],
            "attended_seconds": a["attended_seconds"],
            "score": None,
        }
        for a in result["attendees"]
        if a["attended_seconds"] > 0 and (not threshold.given or a.get("eligible"))
    ]
    rules = {"stage": stage, "threshold": threshold.describe(), "source": "attendance"}
    return Eligible(rules, info, people)
