"""Quiz answers stored and scored per second, and the time of `funnel`, at record scale (issue 16).

An 18,000-person webinar: its participant report and registrants synced from the simulator
(the production path, unpaced), then a poll report of 18,000 people x 10 questions
(180,000 answers) stored as evidence, normalized and scored (`save_poll_report` then
`refresh_quiz_scores`), then `funnel` timed in-process and as a fresh `worker.py` process.

    python bench/bench_funnel.py                 # 18,000 people, 10 questions
    python bench/bench_funnel.py --people 2000   # a quick run

Targets: >= 20,000 answers/s stored and scored; `funnel` under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integrations.funnel.stages import funnel, refresh_quiz_scores  # noqa: E402
from integrations.reports.sync import sync_meeting  # noqa: E402
from integrations.simulator.zoom_api import ZoomSimulator, synthetic_webinar  # noqa: E402
from integrations.zoom.client import ZoomClient  # noqa: E402
from integrations.zoom.polls import answer_rows  # noqa: E402
from store.db import open_db  # noqa: E402
from store.evidence import RawPage  # noqa: E402
from store.migrations import migrate  # noqa: E402
from store.quiz import save_poll_definitions, save_poll_report  # noqa: E402
from store.rules import set_rules  # noqa: E402

WEBINAR = "91234567890"
ROOT = Path(__file__).resolve().parents[1]


def quiz(questions: int) -> tuple[list[dict], list[dict]]:
    polls = [
        {"meeting_id": WEBINAR, "poll_id": "quiz", "title": "Quiz", "poll_type": 3, "anonymous": 0, "status": "ended"}
    ]
    rows = [
        {
            "meeting_id": WEBINAR,
            "poll_id": "quiz",
            "number": n,
            "question": f"Question {n + 1}",
            "type": "multiple" if n % 4 == 3 else "single",
            "answers": json.dumps(["A", "B", "C", "D"]),
            "right_answers": json.dumps(["A", "B"] if n % 4 == 3 else ["A"]),
        }
        for n in range(questions)
    ]
    return polls, rows


def poll_report(emails: list[str], questions: int) -> bytes:
    entries = []
    for i, email in enumerate(emails):
        details = [
            {
                "polling_id": "quiz",
                "question": f"Question {n + 1}",
                "answer": ("A;B" if n % 4 == 3 else "A") if (i + n) % 4 else "C",
                "date_time": f"2026-01-15T16:{n:02d}:{i % 60:02d}Z",
            }
            for n in range(questions)
        ]
        entries.append({"name": f"Person {i}", "email": email, "question_details": details})
    return json.dumps(
        {"id": int(WEBINAR), "uuid": "x", "start_time": "2026-01-15T15:00:00Z", "questions": entries}
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=18_000)
    parser.add_argument("--questions", type=int, default=10)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-funnel-")
    path = os.path.join(directory, "funnel.db")
    db = open_db(path)
    migrate(db)
    dataset = synthetic_webinar(args.people, seed=3, webinar_id=WEBINAR, absentees=0.3)
    [instance] = dataset.instances[WEBINAR]
    uuid = instance["uuid"]
    started = time.perf_counter()
    with ZoomSimulator(dataset) as sim:
        client = ZoomClient(
            **sim.client_settings(),
            requests_per_second=0,
            heavy_requests_per_second=0,
        )
        sync_meeting(db, client, WEBINAR, kind="webinar", polls=False)
        client.close()
    print(f"setup: participant report and registrants synced in {time.perf_counter() - started:.1f} s")
    emails = sorted({r["user_email"] for r in dataset.participants[uuid] if r["user_email"]})
    emails += [f"guest{i}@example.org" for i in range(max(0, args.people - len(emails)))]
    emails = emails[: args.people]
    polls, questions = quiz(args.questions)
    save_poll_definitions(db, WEBINAR, RawPage("bench:definitions", b'{"polls":[]}'), polls, questions)
    body = poll_report(emails, args.questions)

    started = time.perf_counter()
    rows = answer_rows(json.loads(body)["questions"])
    save_poll_report(db, uuid, RawPage(f"bench:report/{uuid}/polls", body), rows, meeting_id=WEBINAR)
    stored = time.perf_counter() - started
    scored_rows = refresh_quiz_scores(db, uuid)
    took = time.perf_counter() - started
    print(
        f"answers: {len(rows):,} ({len(emails):,} people x {args.questions} questions) parsed, stored and scored in "
        f"{took:.2f} s = {len(rows) / took:,.0f} answers/s (store {stored:.2f} s, score {took - stored:.2f} s); "
        f"{scored_rows:,} score rows; target >= 20,000 answers/s"
    )

    set_rules(db, WEBINAR, {"min_minutes": 60, "min_percent": None, "pass_percent": 70})
    funnel(db, WEBINAR)  # the first call writes funnel_people; later ones find them current
    times = []
    for _ in range(5):
        t = time.perf_counter()
        result = funnel(db, WEBINAR)
        times.append(time.perf_counter() - t)
    counts = ", ".join(f"{s['stage']} {s['count']:,}" for s in result["stages"])
    print(f"funnel in-process: median {statistics.median(times):.3f} s of 5 (min {min(times):.3f}); {counts}")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{path}"}
    walls = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "worker.py"), "funnel", WEBINAR, "--format", "json"],
            env=env,
            check=True,
            capture_output=True,
            cwd=directory,
        )
        walls.append(time.perf_counter() - t)
    print(
        f"funnel as `worker.py funnel --format json` (a fresh process, imports included): median {statistics.median(walls):.3f} s of 3"
    )
    print("target: funnel under 0.5 s")
    db.close()
    print(f"command: python bench/bench_funnel.py --people {args.people} --questions {args.questions}")


if __name__ == "__main__":
    main()
