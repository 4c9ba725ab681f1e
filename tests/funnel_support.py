"""A generated funnel scenario whose true counts are known from how it was made (issue 16).

Each person is drawn with the stages they reach; the Zoom dataset (report rows, registrants,
quiz and answers) and the outside CSV are written from those draws, with the traps the
matching must survive: emails in other cases, guests known only by registrant id, answers
changed later, people who answered without ever joining, anonymous answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.simulator.zoom_api import Dataset

WEBINAR = "93000000001"
UUID = "FunnelScenario+Instance=="
START = datetime(2026, 2, 10, 14, 0, tzinfo=UTC)
QUESTIONS = 10
MIN_MINUTES = 60
PASS_PERCENT = 70


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Scenario:
    dataset: Dataset
    csv: bytes
    truth: dict[str, int]
    people: dict[str, set[str]] = field(default_factory=dict)  # stage -> emails (or keys) of who reached it


def quiz_definition() -> dict[str, Any]:
    questions = []
    for n in range(QUESTIONS):
        multiple = n % 3 == 2
        questions.append(
            {
                "name": f"Q{n + 1}. Pick the right answer",
                "type": "multiple" if multiple else "single",
                "answers": ["Alpha", "Beta", "Gamma", "Delta"],
                "right_answers": ["Alpha", "Gamma"] if multiple else ["Beta"],
            }
        )
    return {
        "id": "quiz-1",
        "status": "ended",
        "anonymous": False,
        "poll_type": 3,
        "title": "Quiz",
        "questions": questions,
    }


def _details(rng: random.Random, correct: int, answered: int) -> list[dict[str, Any]]:
    out = []
    order = list(range(QUESTIONS))
    right_ones = set(rng.sample(order[:answered], correct))
    for n in order[:answered]:
        multiple = n % 3 == 2
        right = " gamma ;ALPHA" if multiple else " beta "  # sets, case and spaces ignored
        wrong = "Alpha" if multiple else "Delta"
        at = START + timedelta(minutes=70, seconds=20 * n)
        final = right if n in right_ones else wrong
        if rng.random() < 0.1:  # answered first the other way, then changed: the last counts
            first = wrong if final == right else right
            out.append(
                {
                    "polling_id": "quiz-1",
                    "question": f"Q{n + 1}. Pick the right answer",
                    "answer": first,
                    "date_time": _iso(at),
                }
            )
            at += timedelta(seconds=3)
        out.append(
            {
                "polling_id": "quiz-1",
                "question": f"Q{n + 1}.  pick the right answer",
                "answer": final,
                "date_time": _iso(at),
            }
        )
    return out


def scenario(people: int = 400, *, seed: int = 16, anonymous: int = 5) -> Scenario:
    """Draw `people` people and write the Zoom data and the outside list they imply."""
    rng = random.Random(seed)
    dataset = Dataset()
    dataset.add_meeting(WEBINAR, "webinar", "Funnel scenario")
    rows: list[dict[str, Any]] = []
    registrants: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    csv_lines = ["email,name,school"]
    stages: dict[str, set[str]] = {
        s: set() for s in ("registered", "zoom_registered", "joined", "attended", "answered", "passed")
    }
    for i in range(people):
        email = f"teacher{i}@schools.example"
        name = f"Teacher {i}"
        outside = rng.random() < 0.9
        zoom = rng.random() < 0.85
        joined = rng.random() < (0.8 if zoom else 0.3)
        answers = joined and rng.random() < 0.8 or (not joined and rng.random() < 0.05)
        if outside:
            shown = email.upper() if i % 11 == 0 else email
            csv_lines.append(f" {shown} ,{name},School {i % 40}")
            stages["registered"].add(email)
        rid = f"R{i:06d}"
        if zoom:
            registrants.append(
                {"id": rid, "email": email, "first_name": "Teacher", "last_name": str(i), "status": "approved"}
            )
            stages["zoom_registered"].add(email)
        elif rng.random() < 0.3:  # pending or denied: never counted as registered
            registrants.append(
                {
                    "id": rid,
                    "email": email,
                    "first_name": "Teacher",
                    "last_name": str(i),
                    "status": rng.choice(["pending", "denied"]),
                }
            )
        minutes = 0
        if joined:
            minutes = rng.choice([10, 45, 59, 60, 61, 90, 120])
            # Guests of a registered webinar: the report hides the email, the registrant id stays.
            hide_email = zoom and i % 13 == 0
            report_email = "" if hide_email else (email.title() if i % 7 == 0 else email)
            join = START + timedelta(minutes=rng.randint(0, 10))
            if minutes >= 60 and i % 5 == 0:  # dropped and rejoined: two connections, one person
                cut = join + timedelta(minutes=30)
                spans = [(join, cut), (cut + timedelta(minutes=2), cut + timedelta(minutes=2 + minutes - 30))]
            else:
                spans = [(join, join + timedelta(minutes=minutes))]
            for begin, end in spans:
                rows.append(
                    {
                        "id": "",
                        "user_id": str(20000000 + len(rows)),
                        "name": name,
                        "user_email": report_email,
                        "registrant_id": rid if zoom else "",
                        "participant_user_id": "",
                        "join_time": _iso(begin),
                        "leave_time": _iso(end),
                        "duration": int((end - begin).total_seconds()),
                        "failover": False,
                        "status": "in_meeting",
                        "customer_key": "",
                        "bo_mtg_id": "",
                    }
                )
            stages["joined"].add(email)
            if minutes >= MIN_MINUTES:
                stages["attended"].add(email)
        if answers:
            answered = rng.randint(1, QUESTIONS)
            correct = rng.randint(answered // 2, answered)
            entries.append(
                {
                    "name": name,
                    "email": email if i % 3 else email.upper(),
                    "question_details": _details(rng, correct, answered),
                }
            )
            stages["answered"].add(email)
            if email in stages["attended"] and correct * 100 >= PASS_PERCENT * QUESTIONS:
                stages["passed"].add(email)
    for a in range(anonymous):
        entries.append({"name": "Anonymous Attendee", "email": "", "question_details": _details(rng, 10, 10)})
        stages["answered"].add(f"anonymous:{a}")
    rng.shuffle(entries)
    csv_lines += ["not-an-email,Someone,School 1", ",Nobody,School 2"]
    end = START + timedelta(hours=3)
    dataset.add_instance(WEBINAR, UUID, _iso(START), sorted(rows, key=lambda r: r["join_time"]))
    dataset.registrants[WEBINAR] = registrants
    dataset.polls[WEBINAR] = [
        quiz_definition(),
        {
            "id": "poll-2",
            "poll_type": 1,
            "title": "Feedback",
            "questions": [{"name": "Q1. Pick the right answer", "type": "single", "answers": ["Beta", "x"]}],
        },
    ]
    dataset.poll_reports[UUID] = entries
    truth = {stage: len(who) for stage, who in stages.items()}
    del end
    return Scenario(dataset, ("\n".join(csv_lines) + "\n").encode(), truth, stages)
