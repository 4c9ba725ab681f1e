"""Scoring quiz answers (issue 16): per person per quiz, questions answered, correct, percent.

Pure: plain dicts in, plain dicts out; no I/O. The choices, and why (docs/funnel.md):
answers compare as sets of choices, case and surrounding whitespace ignored; a question
answered more than once (a relaunched quiz, a changed answer) counts once, with the answer
given last; anonymous answers count, each entry its own person, and are never matched by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MULTI_VALUED = frozenset(("multiple", "fill_in_the_blank", "matching", "rank_order"))
_SPACES = re.compile(r"\s+")


def question_key(text: str | None) -> str:
    """A question's text as answers and definitions are matched: spaces collapsed, case ignored."""
    return _SPACES.sub(" ", (text or "").strip()).casefold()


def choice_set(answer: str | None, question_type: str) -> frozenset[str]:
    """An answer as a set of choices; multi-valued answers arrive joined with `;`."""
    if answer is None:
        return frozenset()
    parts = answer.split(";") if question_type in MULTI_VALUED else [answer]
    return frozenset(p.strip().casefold() for p in parts if p.strip())


def is_correct(answer: str | None, right_answers: Iterable[str], question_type: str) -> bool:
    """Whether an answer is exactly the set of right answers (order, case, spaces aside)."""
    right = frozenset(r.strip().casefold() for r in right_answers if r.strip())
    return bool(right) and choice_set(answer, question_type) == right


def time_key(value: str | None) -> str:
    """A sortable form of Zoom's answer time: `...:12Z` and `...:12.66Z` order as times do."""
    if not value:
        return ""
    if value.endswith("Z") and "." not in value[19:]:
        return value[:-1] + ".000000Z"
    head, _, fraction = value[:-1].partition(".") if value.endswith("Z") else (value, "", "")
    return f"{head}.{fraction.ljust(6, '0')[:6]}Z" if fraction else value


def person_of(answer: Mapping[str, Any]) -> str:
    """Who an answer row belongs to: a normalized email, else its own entry (never a name)."""
    email = answer.get("email")
    if email:
        email = email.strip().lower()
        if email:
            return "email:" + email
    return ("anonymous:" if answer.get("anonymous") else "unmatched:") + str(answer["entry"])


def last_answers(answers: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Mapping[str, Any]]:
    """The answer that counts per (person, poll, question): the one given last.

    Ties in time go to the later position in Zoom's report. Last, because it is what the
    participant submitted last: a relaunched quiz or a changed answer replaces the earlier one.
    """
    chosen: dict[tuple[str, str, str], tuple[tuple, Mapping[str, Any]]] = {}
    for row in answers:
        key = (person_of(row), row.get("poll_id") or "", question_key(row.get("question")))
        rank = (time_key(row.get("date_time")), row["entry"], row["detail"])
        held = chosen.get(key)
        if held is None or rank > held[0]:
            chosen[key] = (rank, row)
    return {key: row for key, (_, row) in chosen.items()}


def score_quizzes(questions: Iterable[Mapping[str, Any]], answers: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """quiz_scores rows: one per person per quiz they answered at least one question of.

    `questions` are the quiz questions (poll_id, question, type, right_answers as a list);
    answers to other polls, or to questions not in the quiz, are not scored. Same rules as
    `last_answers`, `person_of` and `is_correct`, inlined with caches: 180,000 answers of a
    record attempt repeat a few hundred distinct texts and times (bench/bench_funnel.py).
    """
    quiz: dict[str, dict[str, Mapping[str, Any]]] = {}
    for q in questions:
        quiz.setdefault(q["poll_id"], {})[question_key(q["question"])] = q
    question_keys: dict[str | None, str] = {}
    time_keys: dict[str | None, str] = {}
    chosen: dict[tuple[str, str, str], tuple[tuple, Mapping[str, Any]]] = {}
    for row in answers:
        poll_id = row.get("poll_id")
        if poll_id not in quiz:
            continue
        text = row.get("question")
        qkey = question_keys.get(text)
        if qkey is None:
            qkey = question_keys[text] = question_key(text)
        when = row.get("date_time")
        tkey = time_keys.get(when)
        if tkey is None:
            tkey = time_keys[when] = time_key(when)
        key = (person_of(row), poll_id, qkey)
        rank = (tkey, row["entry"], row["detail"])
        held = chosen.get(key)
        if held is None or rank > held[0]:
            chosen[key] = (rank, row)
    verdicts: dict[tuple[str, str, str | None], bool] = {}
    people: dict[tuple[str, str], dict[str, Any]] = {}
    for (person, poll_id, qkey), (_, row) in chosen.items():
        question = quiz[poll_id].get(qkey)
        if question is None:
            continue
        score = people.get((poll_id, person))
        if score is None:
            score = people[(poll_id, person)] = {
                "poll_id": poll_id,
                "person": person,
                "email": (row.get("email") or "").strip().lower() or None,
                "name": row.get("name"),
                "anonymous": int(bool(row.get("anonymous"))),
                "questions": len(quiz[poll_id]),
                "answered": 0,
                "correct": 0,
            }
        score["answered"] += 1
        vkey = (poll_id, qkey, row.get("answer"))
        verdict = verdicts.get(vkey)
        if verdict is None:
            verdict = verdicts[vkey] = is_correct(row.get("answer"), question["right_answers"], question["type"])
        score["correct"] += verdict
    rows = sorted(people.values(), key=lambda s: (s["poll_id"], s["person"]))
    for s in rows:
        s["score_percent"] = round(100 * s["correct"] / s["questions"], 2) if s["questions"] else 0.0
    return rows


def passes(correct: int, questions: int, pass_percent: float) -> bool:
    """Whether `correct` of `questions` meets `pass_percent` (exact: no float rounding decides)."""
    return questions > 0 and correct * 100 >= pass_percent * questions - 1e-9
