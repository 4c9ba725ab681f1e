"""The funnel's people: who is the same person across registrations, attendance and the quiz.

Pure: plain values in and out. Matching goes by normalized email first, then by the strong
ids the attendance engine uses (registrant id); never by display name (NOTES.md, "Known
trouble": name matching gives attendance to the wrong person). What cannot be matched stays
its own person and is listed among the mismatches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from integrations.attendance.identity import normalize_email
from integrations.funnel.scoring import passes

STAGES = ("registered", "zoom_registered", "joined", "attended", "answered", "passed")
FLAGS = {
    "registered": "registered",
    "zoom_registered": "zoom_registered",
    "joined": "joined",
    "attended": "attended",
    "answered": "answered_quiz",
    "passed": "passed",
}


class _People:
    def __init__(self) -> None:
        self.people: list[dict[str, Any]] = []
        self.by_email: dict[str, int] = {}
        self.by_registrant: dict[str, int] = {}

    def find(self, emails: Iterable[str | None], registrant_ids: Iterable[str | None] = ()) -> int | None:
        for email in emails:
            key = normalize_email(email)
            if key is not None and key in self.by_email:
                return self.by_email[key]
        for rid in registrant_ids:
            if rid and rid in self.by_registrant:
                return self.by_registrant[rid]
        return None

    def add(self, person: str, **fields: Any) -> int:
        self.people.append(
            {
                "person": person,
                "name": None,
                "email": None,
                "registrant_id": None,
                "person_key": None,
                "attended_seconds": None,
                "questions": None,
                "answered": None,
                "correct": None,
                "score_percent": None,
                "registered": 0,
                "zoom_registered": 0,
                "joined": 0,
                "attended": 0,
                "answered_quiz": 0,
                "passed": 0,
                **fields,
            }
        )
        return len(self.people) - 1

    def index(self, i: int, emails: Iterable[str | None], registrant_ids: Iterable[str | None] = ()) -> None:
        for email in emails:
            key = normalize_email(email)
            if key is not None:
                self.by_email.setdefault(key, i)
        for rid in registrant_ids:
            if rid:
                self.by_registrant.setdefault(rid, i)

    def fill(self, i: int, **fields: Any) -> None:
        person = self.people[i]
        for name, value in fields.items():
            if person.get(name) is None and value is not None:
                person[name] = value


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        if value == "[]":
            return []
        value = orjson.loads(value)
    return [v for v in value or () if v]


def match_people(
    *,
    outside: Sequence[Mapping[str, Any]],
    registrants: Sequence[Mapping[str, Any]],
    attendees: Sequence[Mapping[str, Any]],
    scores: Sequence[Mapping[str, Any]],
    quiz_questions: int,
    eligible: Callable[[int], bool],
    pass_percent: float | None,
) -> list[dict[str, Any]]:
    """One row per person with a flag per stage (see STAGES), sorted by person.

    `attendees`: person_key, name, email, emails, registrant_ids, attended_seconds.
    `registrants`: Zoom's approved registrants (registrant_id, email, name).
    `outside`: the imported list (email, name). `scores`: quiz_scores rows of the instance.
    `quiz_questions`: questions over every quiz of the instance (the pass denominator).
    `eligible(seconds)`: whether attendance meets the rules' minimum.
    """
    book = _People()
    for a in attendees:
        emails: list[str | None] = [*_list(a.get("emails"))] or [a.get("email")]
        rids: list[str | None] = [*_list(a.get("registrant_ids"))] or [a.get("registrant_id")]
        seconds = int(a["attended_seconds"])
        email = normalize_email(a.get("email")) or next((normalize_email(e) for e in emails if e), None)
        i = book.add(
            f"email:{email}" if email else f"attendee:{a['person_key']}",
            name=a.get("name"),
            email=email,
            registrant_id=next(iter(rids), None),
            person_key=a["person_key"],
            attended_seconds=seconds,
            joined=1,
            attended=int(eligible(seconds)),
        )
        book.index(i, emails, rids)
    for r in registrants:
        email = normalize_email(r.get("email"))
        found = book.find([email], [r.get("registrant_id")])
        i = found if found is not None else book.add(f"email:{email}" if email else f"registrant:{r['registrant_id']}")
        book.fill(i, name=r.get("name"), email=email, registrant_id=r.get("registrant_id"))
        book.people[i]["zoom_registered"] = 1
        book.index(i, [email], [r.get("registrant_id")])
    for o in outside:
        email = normalize_email(o.get("email"))
        found = book.find([email])
        i = found if found is not None else book.add(f"email:{email}")
        book.fill(i, name=o.get("name"), email=email)
        book.people[i]["registered"] = 1
        book.index(i, [email])
    totals: dict[int, list[int]] = {}
    unmatched: dict[str, int] = {}  # one report entry without email, over several quizzes
    for s in scores:
        email = normalize_email(s.get("email"))
        found = book.find([email]) if email else unmatched.get(s["person"])
        if found is not None:
            i = found
        else:
            i = book.add(s["person"] if not email else f"email:{email}", name=s.get("name"), email=email)
            if email:
                book.index(i, [email])
            else:
                unmatched[s["person"]] = i
        total = totals.setdefault(i, [0, 0])
        total[0] += int(s["answered"])
        total[1] += int(s["correct"])
    for i, (answered, correct) in totals.items():
        person = book.people[i]
        person.update(answered=answered, correct=correct, questions=quiz_questions, answered_quiz=int(answered > 0))
        person["score_percent"] = round(100 * correct / quiz_questions, 2) if quiz_questions else 0.0
        if pass_percent is not None:
            person["passed"] = int(bool(person["attended"]) and passes(correct, quiz_questions, pass_percent))
    return sorted(book.people, key=lambda p: p["person"])


def stage_list(*, outside_imported: bool, pass_percent: float | None) -> list[str]:
    """The stages this meeting's funnel has, in order."""
    return [
        s for s in STAGES if (s != "registered" or outside_imported) and (s != "passed" or pass_percent is not None)
    ]


def counts(people: Sequence[Mapping[str, Any]], stages: Sequence[str]) -> list[dict[str, Any]]:
    """`[{"stage": ..., "count": ...}]` in funnel order."""
    totals = dict.fromkeys(stages, 0)
    flags = [(s, FLAGS[s]) for s in stages]
    for p in people:
        for stage, flag in flags:
            if p[flag]:
                totals[stage] += 1
    return [{"stage": s, "count": totals[s]} for s in stages]


def at_stage(people: Sequence[Mapping[str, Any]], stage: str) -> list[Mapping[str, Any]]:
    """The people who reached `stage`."""
    flag = FLAGS[stage]
    return [p for p in people if p[flag]]


def dropped_at(people: Sequence[Mapping[str, Any]], stages: Sequence[str], stage: str) -> list[Mapping[str, Any]]:
    """The people who reached the stage before `stage` and not `stage` itself."""
    position = list(stages).index(stage)
    if position == 0:
        raise ValueError(f"{stage} is the first stage: nobody can drop before it")
    before, flag = FLAGS[stages[position - 1]], FLAGS[stage]
    return [p for p in people if p[before] and not p[flag]]


def mismatches(people: Sequence[Mapping[str, Any]], *, outside_imported: bool) -> list[dict[str, Any]]:
    """People the stages do not line up for, each with why (answered but never joined, ...)."""
    out = []
    for p in people:
        reasons = []
        if p["answered_quiz"] and not p["joined"]:
            if p["person"].startswith("anonymous:"):
                reasons.append("answered anonymously: cannot be matched to anyone")
            elif p["email"] is None:
                reasons.append("answered without an email: never matched by name")
            else:
                reasons.append("answered the quiz but never seen in the meeting")
        if outside_imported and p["joined"] and not p["registered"]:
            reasons.append("joined but not on the imported registration list")
        if outside_imported and p["zoom_registered"] and not p["registered"]:
            reasons.append("registered in Zoom but not on the imported list")
        for reason in reasons:
            out.append({"person": p["person"], "name": p["name"], "email": p["email"], "reason": reason})
    return out
