"""Quiz scoring and funnel matching (issue 16): pure functions, plain values."""

from __future__ import annotations

from integrations.funnel.matching import at_stage, counts, dropped_at, match_people, stage_list
from integrations.funnel.scoring import is_correct, passes, score_quizzes, time_key

QUIZ = [
    {"poll_id": "q", "question": "Capital of France?", "type": "single", "right_answers": ["Paris"]},
    {"poll_id": "q", "question": "Primes?", "type": "multiple", "right_answers": ["2", "3", "5"]},
    {"poll_id": "q", "question": "Colour of the sky?", "type": "single", "right_answers": ["Blue"]},
    {"poll_id": "q", "question": "Largest ocean?", "type": "single", "right_answers": ["Pacific"]},
]


def answer(entry, question, value, at, *, email="ana@example.org", name="Ana", poll="q", detail=0, anonymous=0):
    return {
        "entry": entry,
        "detail": detail,
        "email": email,
        "name": name,
        "anonymous": anonymous,
        "poll_id": poll,
        "question": question,
        "answer": value,
        "date_time": at,
    }


def test_multiple_choice_compares_sets_ignoring_order_case_and_spaces():
    assert is_correct(" 5;3 ; 2", ["2", "3", "5"], "multiple")
    assert not is_correct("2;3", ["2", "3", "5"], "multiple")  # a subset is wrong
    assert not is_correct("2;3;5;7", ["2", "3", "5"], "multiple")  # so is a superset
    assert is_correct("  pARis ", ["Paris"], "single")
    assert not is_correct(None, ["Paris"], "single")
    assert not is_correct("anything", [], "single")  # no right answer defined: never correct


def test_score_counts_answered_correct_and_percent_over_all_questions():
    [score] = score_quizzes(
        QUIZ,
        [
            answer(0, "Capital of France?", "paris", "2026-01-01T10:00:00Z", detail=0),
            answer(0, "Primes?", "3;2;5", "2026-01-01T10:01:00Z", detail=1),
            answer(0, "Colour of the sky?", "Green", "2026-01-01T10:02:00Z", detail=2),
        ],
    )
    # The unanswered fourth question counts against the score.
    assert (score["answered"], score["correct"], score["questions"], score["score_percent"]) == (3, 2, 4, 50.0)


def test_question_answered_twice_counts_once_with_the_last_answer():
    rows = [
        answer(0, "Capital of France?", "Paris", "2026-01-01T10:00:05Z", detail=0),
        answer(0, "Capital of France?", "Lyon", "2026-01-01T10:00:05.500Z", detail=1),  # later by half a second
    ]
    [score] = score_quizzes(QUIZ, rows)
    assert (score["answered"], score["correct"]) == (1, 0)
    assert time_key("2026-01-01T10:00:05Z") < time_key("2026-01-01T10:00:05.500Z")


def test_quiz_launched_twice_keeps_each_question_once_per_person():
    first = [answer(0, q["question"], "wrong", "2026-01-01T10:00:00Z", detail=n) for n, q in enumerate(QUIZ[:2])]
    # The relaunch: a new report entry for the same person (email in another case), later answers.
    second = [
        answer(5, "Capital of France?", "Paris", "2026-01-01T11:00:00Z", email="ANA@example.org "),
        answer(5, "Largest ocean?", "Pacific", "2026-01-01T11:00:10Z", email="ANA@example.org ", detail=1),
    ]
    [score] = score_quizzes(QUIZ, first + second)
    assert score["person"] == "email:ana@example.org"
    assert (score["answered"], score["correct"]) == (3, 2)  # primes stays wrong from the first launch


def test_anonymous_answers_count_but_each_entry_is_its_own_person():
    rows = [
        answer(
            1, "Capital of France?", "Paris", "2026-01-01T10:00:00Z", email=None, name="Anonymous Attendee", anonymous=1
        ),
        answer(
            2, "Capital of France?", "Paris", "2026-01-01T10:00:00Z", email=None, name="Anonymous Attendee", anonymous=1
        ),
        answer(3, "Capital of France?", "Paris", "2026-01-01T10:00:00Z", email=None, name="Ana"),
    ]
    scores = score_quizzes(QUIZ, rows)
    assert [s["person"] for s in scores] == ["anonymous:1", "anonymous:2", "unmatched:3"]
    people = match_people(
        outside=[],
        registrants=[],
        attendees=[attendee("email:ana@example.org", "Ana", "ana@example.org", 3600)],
        scores=scores,
        quiz_questions=4,
        eligible=lambda s: True,
        pass_percent=25,
    )
    ana = next(p for p in people if p["person"] == "email:ana@example.org")
    assert not ana["answered_quiz"]  # "Ana" without email is never matched to Ana by name
    assert sum(p["answered_quiz"] for p in people) == 3 and sum(p["passed"] for p in people) == 0


def test_answers_to_plain_polls_and_unknown_questions_are_not_scored():
    rows = [
        answer(0, "Capital of France?", "Paris", "2026-01-01T10:00:00Z", poll="feedback"),
        answer(0, "Not in the quiz?", "Paris", "2026-01-01T10:00:00Z", detail=1),
    ]
    assert score_quizzes(QUIZ, rows) == []


def test_pass_percent_is_exact():
    assert passes(7, 10, 70) and not passes(6, 10, 70)
    assert passes(2, 3, 66.66666666666667) and not passes(0, 0, 0)


def attendee(key, name, email, seconds, *, registrant_ids=()):
    return {
        "person_key": key,
        "name": name,
        "email": email,
        "emails": [email] if email else [],
        "registrant_ids": list(registrant_ids),
        "attended_seconds": seconds,
    }


def test_matching_by_email_in_any_case_then_registrant_id_never_by_name():
    people = match_people(
        outside=[{"email": " Bo@Example.org", "name": "Bo"}, {"email": "only@example.org", "name": "Only Listed"}],
        registrants=[{"registrant_id": "R1", "email": "cy@example.org", "name": "Cy"}],
        attendees=[
            attendee("email:bo@example.org", "Bo", "bo@example.org", 4000),
            # A guest whose email the report hid: found through the registrant id.
            attendee("registrant:R1", "Cy", None, 100, registrant_ids=["R1"]),
            attendee("name:Only Listed", "Only Listed", None, 5000),
        ],
        scores=[
            {"person": "email:cy@example.org", "email": "CY@example.org", "name": "Cy", "answered": 2, "correct": 2}
        ],
        quiz_questions=2,
        eligible=lambda s: s >= 3600,
        pass_percent=50,
    )
    by = {p["person"]: p for p in people}
    assert by["email:bo@example.org"]["registered"] and by["email:bo@example.org"]["attended"]
    cy = by["attendee:registrant:R1"]
    assert cy["zoom_registered"] and cy["joined"] and cy["answered_quiz"] and not cy["passed"]  # 100 s: not attended
    # The list's "Only Listed" and the nameless attendee of that name stay two people.
    assert by["email:only@example.org"]["registered"] and not by["email:only@example.org"]["joined"]
    assert by["attendee:name:Only Listed"]["joined"] and not by["attendee:name:Only Listed"]["registered"]
    stages = stage_list(outside_imported=True, pass_percent=50)
    assert counts(people, stages) == [
        {"stage": "registered", "count": 2},
        {"stage": "zoom_registered", "count": 1},
        {"stage": "joined", "count": 3},
        {"stage": "attended", "count": 2},
        {"stage": "answered", "count": 1},
        {"stage": "passed", "count": 0},
    ]
    assert [p["person"] for p in dropped_at(people, stages, "passed")] == ["attendee:registrant:R1"]
    assert len(at_stage(people, "joined")) == 3
    assert stage_list(outside_imported=False, pass_percent=None) == [
        "zoom_registered",
        "joined",
        "attended",
        "answered",
    ]
