"""The record funnel of a meeting (issue 16): counts per stage, the people behind each count.

Reads the derived attendance, Zoom's registrants, the imported list and the quiz scores,
applies the meeting's stored rules (or a one-query override) and matches people with
integrations/funnel/matching.py. Other features call `people_at_stage`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.funnel.matching import (
    at_stage,
    counts,
    dropped_at,
    match_people,
    mismatches,
    stage_list,
)
from integrations.funnel.scoring import score_quizzes
from integrations.reads.attendance import current_instance, now_seconds
from store.attendance_queries import BadQuery, Threshold
from store.db import Store
from store.funnel import (
    FUNNEL_COLUMNS,
    approved_registrants,
    attendees,
    inputs_signature,
    instance_head,
    stored_people,
    write_funnel_people,
)
from store.quiz import poll_answers, quiz_questions, quiz_scores, replace_quiz_scores
from store.registrations import has_imports, outside_registrations
from store.rules import RULE_FIELDS, current_rules


class UnknownStage(BadQuery):
    """A stage name this funnel does not have; `option` is the option that named it."""

    def __init__(self, message: str, option: str):
        super().__init__(message)
        self.option = option


# A person of the funnel as users see it: the stored columns (person_key is the attendance
# engine's key, which certificates are kept by), with minutes beside the seconds.
_STORED = tuple(c for c in FUNNEL_COLUMNS if c != "rules_id")
_MINUTES_AT = _STORED.index("attended_seconds") + 1
PERSON_OUTPUT = (*_STORED[:_MINUTES_AT], "attended_minutes", *_STORED[_MINUTES_AT:])


def effective_rules(
    db: Store, meeting_id: str | None, overrides: Mapping[str, float | None] | None = None
) -> dict[str, Any]:
    """The meeting's stored rules with any one-query overrides on top (and which applied)."""
    stored = current_rules(db, meeting_id)
    rules: dict[str, Any] = {f: (stored or {}).get(f) for f in RULE_FIELDS}
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "min_minutes" in given or "min_percent" in given:
        # A minimum given for this query replaces the stored one, of either kind.
        rules["min_minutes"] = rules["min_percent"] = None
    rules.update(given)
    rules["version"] = stored["id"] if stored else None
    rules["set_at"] = stored["set_at"] if stored else None
    rules["overridden"] = sorted(given)
    return rules


def threshold_of(rules: Mapping[str, Any]) -> Threshold:
    """The attendance minimum of `rules` as the attendance queries take it."""
    return Threshold(rules.get("min_minutes"), rules.get("min_percent"))


def stored_threshold(db: Store, instance_uuid: str) -> Threshold:
    """The attendance minimum stored for the meeting of an instance (none when never set)."""
    row = db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [instance_uuid]).fetchone()
    return threshold_of(effective_rules(db, row[0] if row else None))


def refresh_quiz_scores(db: Store, instance_uuid: str) -> int:
    """Recompute an instance's quiz_scores from its stored answers and quiz; returns rows written."""
    head = db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [instance_uuid]).fetchone()
    rows = score_quizzes(quiz_questions(db, head[0] if head else None), poll_answers(db, instance_uuid))
    replace_quiz_scores(db, instance_uuid, rows)
    return len(rows)


def funnel_people(
    db: Store, instance_uuid: str, rules: Mapping[str, Any], *, now: int | None = None
) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """(instance head, stages, people with a flag per stage) of an instance under `rules`."""
    head = instance_head(db, instance_uuid)
    if head is None:
        raise BadQuery(f"no attendance computed for instance {instance_uuid!r}")
    meeting_id = head["meeting_id"]
    threshold = threshold_of(rules)
    window = head["window_seconds"]
    questions = quiz_questions(db, meeting_id)
    people = match_people(
        outside=outside_registrations(db, meeting_id),
        registrants=approved_registrants(db, meeting_id),
        attendees=attendees(db, instance_uuid, now=now_seconds() if now is None else now),
        scores=quiz_scores(db, instance_uuid),
        quiz_questions=len(questions),
        # No minimum set: everyone who joined counts as attended.
        eligible=(lambda s: bool(threshold.eligible(s, window))) if threshold.given else (lambda s: True),
        pass_percent=rules.get("pass_percent"),
    )
    for p in people:
        p["rules_id"] = rules.get("version")
    stages = stage_list(outside_imported=has_imports(db, meeting_id), pass_percent=rules.get("pass_percent"))
    return head, stages, people


def _people(
    db: Store, uuid: str, meeting_id: str | None, rules: Mapping[str, Any], *, now: int | None
) -> tuple[dict[str, Any], list[str], list[dict[str, Any]]]:
    """funnel_people as stored when their inputs have not changed (and nobody is still in
    the meeting), else computed and stored: `funnel` answers from the derived table."""
    if rules["overridden"]:
        return funnel_people(db, uuid, rules, now=now)
    signature = inputs_signature(db, uuid, meeting_id, rules.get("version"))
    people = stored_people(db, uuid, signature)
    head = instance_head(db, uuid)
    if people is None or head is None:
        head, stages, people = funnel_people(db, uuid, rules, now=now)
        write_funnel_people(db, uuid, people, signature)
        return head, stages, people
    stages = stage_list(outside_imported=has_imports(db, meeting_id), pass_percent=rules.get("pass_percent"))
    return head, stages, people


def _output(person: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: person.get(k) for k in PERSON_OUTPUT if k != "attended_minutes"}
    seconds = person.get("attended_seconds")
    row["attended_minutes"] = None if seconds is None else round(seconds / 60, 2)
    for flag in ("registered", "zoom_registered", "joined", "attended", "answered_quiz", "passed"):
        row[flag] = bool(person[flag])
    return {k: row[k] for k in PERSON_OUTPUT}


def funnel(
    db: Store,
    meeting: str,
    *,
    instance: str | None = None,
    overrides: Mapping[str, float | None] | None = None,
    stage: str | None = None,
    dropped: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """`{"meeting", "instance_uuid", "rules", "stages", "mismatches"}`, plus `people` with stage or dropped."""
    uuid = current_instance(db, meeting, instance)
    meeting_id = db.execute("SELECT meeting_id FROM instances WHERE instance_uuid = ?", [uuid]).fetchone()[0]
    rules = effective_rules(db, meeting_id, overrides)
    threshold_of(rules)  # BadQuery when the combination cannot be applied
    head, stages, people = _people(db, uuid, meeting_id, rules, now=now)
    result: dict[str, Any] = {
        "meeting": meeting_id,
        "instance_uuid": uuid,
        "topic": head["topic"],
        "rules": {k: rules[k] for k in (*RULE_FIELDS, "version", "set_at", "overridden")},
        "stages": counts(people, stages),
    }
    imported = "registered" in stages
    result["mismatches"] = mismatches(people, outside_imported=imported)
    for name, option in ((stage, "stage"), (dropped, "dropped_at")):
        if name is not None and name not in stages:
            raise UnknownStage(f"no stage {name!r} in this funnel (stages: {', '.join(stages)})", option)
    if stage is not None:
        result["people"] = [_output(p) for p in at_stage(people, stage)]
    elif dropped is not None:
        try:
            result["people"] = [_output(p) for p in dropped_at(people, stages, dropped)]
        except ValueError as e:
            raise BadQuery(str(e)) from None
    return result


def people_at_stage(
    db: Store,
    meeting: str,
    stage: str,
    *,
    instance: str | None = None,
    overrides: Mapping[str, float | None] | None = None,
    now: int | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(rules in force, people at `stage`) of MEETING (numeric id: latest instance; or a UUID).

    Each person: person, name, email, registrant_id, person_key (None for people never seen
    in the meeting), attended_seconds, attended_minutes, questions, answered, correct,
    score_percent and a flag per stage. `overrides` replace stored rules for this call. Raises
    store.attendance_queries.UnknownMeeting or BadQuery (e.g. "passed" without a pass percent).
    """
    result = funnel(db, meeting, instance=instance, overrides=overrides, stage=stage, now=now)
    return result["rules"], result["people"]


def refresh_funnel(db: Store, instance_uuids: list[str]) -> None:
    """Recompute quiz_scores and funnel_people of these instances under their stored rules."""
    for uuid in instance_uuids:
        refresh_quiz_scores(db, uuid)
        head = instance_head(db, uuid)
        if head is None:
            continue
        rules = effective_rules(db, head["meeting_id"])
        signature = inputs_signature(db, uuid, head["meeting_id"], rules["version"])
        write_funnel_people(db, uuid, funnel_people(db, uuid, rules)[2], signature)
