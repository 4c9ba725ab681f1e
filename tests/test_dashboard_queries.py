"""The dashboard table's SQL paging (issue 15): every sort, both ways, live and ended, page by page.

Each order is checked against the CLI's own rows sorted in Python, so the indexes of migration
m050 and the people-first join change only the speed, never which rows a page holds.
"""

from __future__ import annotations

import pytest

from integrations.attendance.intervals import epoch_seconds
from integrations.reads.attendance import current_instance
from store import dashboard_queries as dq
from store.attendance_queries import Threshold, attendance
from store.db import open_db
from tests.attendance_support import Scenario

MEETING = "81200000077"
UUID = "sortsUuid=="
# Same names in other letter cases, no email, the same email domain: ties for every sort.
PEOPLE = [
    ("ann", "zed@x.org"),
    ("Ann", "amy@x.org"),
    ("ANN", None),
    ("Bob", "bob@x.org"),
    ("bob", None),
    ("Cy", "CY@x.org"),
    ("dee", "dee@x.org"),
    ("Eve", None),
    ("Fay", "fay@x.org"),
    ("Gus", "Amy2@x.org"),
]


@pytest.fixture(params=["live", "ended"])
def store(request, client, config):
    sc = Scenario(client, config, meeting_id=MEETING, uuid=UUID)
    sc.started("10:00")
    for i, (name, email) in enumerate(PEOPLE):
        ids = {"email": email} if email else {}
        sc.joined(f"u{i}", name, f"10:{i % 4:02d}", **ids)
        if i % 3:  # a third are still in while the meeting is live
            sc.left(f"u{i}", name, f"10:{20 + 5 * (i % 4):02d}", **ids)
        if i % 2 == 0:  # and some come back: more segments
            sc.joined(f"r{i}", name, "10:30", **ids)
            sc.left(f"r{i}", name, "10:35", **ids)
    if request.param == "ended":
        sc.ended("11:00")
    db = open_db(config.database_path)
    current_instance(db, UUID)
    yield db, request.param
    db.close()


NOW = epoch_seconds("2024-05-01T10:45:00Z")


def _null_first(value):
    """SQLite's order: NULL before any value."""
    return (0, "") if value is None else (1, value)


def expected(rows: list[dict], sort: str, descending: bool) -> list[str]:
    """The person keys in the order the table promises (see dashboard_queries._join_and_order)."""
    name = lambda r: (r["name"] or "").lower()  # noqa: E731  (ASCII names: SQLite's lower())
    email = lambda r: (r["email"] or "").lower()  # noqa: E731
    if sort == "name":
        ordered = sorted(rows, key=lambda r: (name(r), r["person_key"]), reverse=descending)
    elif sort == "email":
        ordered = sorted(rows, key=lambda r: (email(r), name(r), r["person_key"]), reverse=descending)
    else:  # ties by name then key, ascending, whatever the direction
        column = {"attended": "attended_seconds"}.get(sort, sort)
        ordered = sorted(rows, key=lambda r: (name(r), r["person_key"]))
        ordered.sort(key=lambda r: _null_first(r[column]), reverse=descending)  # stable: ties keep their order
    return [r["person_key"] for r in ordered]


@pytest.mark.parametrize("sort", list(dq.SORTS))
@pytest.mark.parametrize("descending", [True, False])
def test_every_sort_pages_through_all_rows_in_the_promised_order(store, sort, descending):
    db, state = store
    rows = attendance(db, UUID, now=NOW)["attendees"]
    assert len(rows) == len(PEOPLE)
    assert any(r["in_meeting"] for r in rows) is (state == "live")
    shown: list[str] = []
    for page in (1, 2, 3, 4):
        query = dq.TableQuery(sort=sort, descending=descending, page=page)
        result = dq.attendance_rows(db, UUID, now=NOW, threshold=Threshold(), query=query, limit=3)
        assert result["total"] == len(PEOPLE)
        shown += [a["person_key"] for a in result["attendees"]]
    assert shown == expected(rows, sort, descending)


@pytest.mark.parametrize("show", ["eligible", "not-eligible"])
def test_eligibility_filter_counts_live_seconds(store, show):
    db, _ = store
    threshold = Threshold(min_minutes=30)
    rows = attendance(db, UUID, now=NOW, threshold=threshold)["attendees"]
    query = dq.TableQuery(show=show)
    result = dq.attendance_rows(db, UUID, now=NOW, threshold=threshold, query=query)
    want = [r for r in rows if r["eligible"] is (show == "eligible")]
    assert result["total"] == len(want) > 0
    assert result["attendees"] == want  # the same rows, in the CLI's order (longest first)


def test_the_table_pages_walk_the_indexes_of_migration_m050(store):
    db, state = store
    plans = []
    db.conn.set_trace_callback(plans.append)
    for sort in ("name", "email"):
        dq.attendance_rows(db, UUID, now=NOW, threshold=Threshold(), query=dq.TableQuery(sort=sort, page=2))
    db.conn.set_trace_callback(None)
    pages = [sql for sql in plans if "ORDER BY" in sql and "LIMIT" in sql]
    assert len(pages) == 2
    for sql, index in zip(pages, ("people_sort_name", "people_sort_email"), strict=True):
        plan = " ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql))
        assert f"INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
