"""Which connections are one person (issue 4, "A person"): strong ids, transitive, weak names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from integrations.attendance.identity import EMAIL, NAME, REGISTRANT, USER, Identifiers, group_people, normalize_email


def conn(ref, *, rid=None, email=None, puid=None, name=None, links=()):
    return Identifiers(
        registrant_ids=(rid,) if rid else (),
        emails=(normalize_email(email),) if email else (),
        participant_user_ids=(puid,) if puid else (),
        names=(name,) if name else (),
        links=tuple(sorted(links)),
        ref=ref,
    )


def groups(items, **kw):
    return {p.key: sorted(items[i].ref for i in p.members) for p in group_people(items, **kw)}


def test_email_matches_case_insensitively():
    people = group_people(
        [conn("a", email="Ann@Example.org", name="Ann"), conn("b", email=" ann@example.ORG ", name="A.")]
    )
    assert [(p.key, p.identity, len(p.members)) for p in people] == [("email:ann@example.org", EMAIL, 2)]


def test_strong_ids_join_transitively():
    # laptop: email; phone rejoin: registrant id only; a third connection carries both.
    items = [conn("laptop", email="ivy@x.org"), conn("phone", rid="R1"), conn("web", rid="R1", email="ivy@x.org")]
    assert groups(items) == {"registrant:R1": ["laptop", "phone", "web"]}


def test_participant_user_id_alone_is_strong():
    people = group_people([conn("a", puid="U9", name="Sam"), conn("b", puid="U9", name="Samuel")])
    assert [(p.key, p.identity, p.name) for p in people] == [("user:U9", USER, "Sam")]  # a tie: alphabetically first


def test_weak_connections_group_by_exact_display_name_only():
    items = [conn("a", name="Guest"), conn("b", name="Guest"), conn("c", name="guest"), conn("d", name="Guest ")]
    assert groups(items) == {"name:Guest": ["a", "b"], "name:guest": ["c"], "name:Guest ": ["d"]}
    assert all(p.identity == NAME for p in group_people(items))


def test_strong_and_weak_are_never_merged_by_name():
    items = [conn("a", email="ann@x.org", name="Ann"), conn("b", name="Ann")]
    assert groups(items) == {"email:ann@x.org": ["a"], "name:Ann": ["b"]}


def test_two_strong_people_with_the_same_name_stay_apart():
    items = [conn("a", email="a@x.org", name="Chris"), conn("b", email="b@x.org", name="Chris")]
    assert len(group_people(items)) == 2


def test_a_link_joins_connections_without_making_them_strong():
    items = [conn("wh", name="Bob", links={"c1"}), conn("rep", name="Bob B.", links={"c1"}), conn("x", name="Bob B.")]
    people = group_people(items)
    # Linked by connection, the pair is one weak person named by its most frequent name (a
    # tie: the alphabetically first); the same-named weak connection is a person of its own.
    assert [(p.key, p.identity, sorted(items[i].ref for i in p.members)) for p in people] == [
        ("name:Bob", NAME, ["rep", "wh"]),
        ("name:Bob B.", NAME, ["x"]),
    ]


def test_a_link_to_a_strong_connection_makes_one_strong_person():
    items = [conn("wh", email="kim@x.org", name="Kim", links={"c7"}), conn("rep", name="Kim", links={"c7"})]
    assert groups(items) == {"email:kim@x.org": ["rep", "wh"]}


def test_a_registration_ties_its_id_and_email():
    items = [conn("web", rid="R5", name="Lea"), conn("mail", email="lea@x.org", name="Lea")]
    assert len(group_people(items)) == 2
    assert groups(items, same_registrant=[("R5", "LEA@x.org")]) == {"registrant:R5": ["mail", "web"]}


def test_two_registrations_with_one_email_are_one_person():
    items = [conn("a", rid="R1"), conn("b", rid="R2")]
    assert groups(items, same_registrant=[("R1", "z@x.org"), ("R2", "z@x.org")]) == {"registrant:R1": ["a", "b"]}


def test_key_prefers_registrant_then_email_then_user():
    people = group_people([conn("a", rid="R2", email="e@x.org", puid="U1"), conn("b", rid="R1")])
    assert [(p.key, p.identity) for p in people] == [("registrant:R1", REGISTRANT), ("registrant:R2", REGISTRANT)]
    assert [(p.key, p.identity) for p in group_people([conn("a", email="e@x.org", puid="U1")])] == [
        ("email:e@x.org", EMAIL)
    ]
    merged = group_people([conn("a", rid="R2", email="e@x.org"), conn("b", rid="R1", email="e@x.org")])
    assert [(p.key, p.registrant_ids) for p in merged] == [("registrant:R1", ["R1", "R2"])]


def test_nameless_connections_without_ids_stay_apart():
    people = group_people([conn("wh:1"), conn("wh:2")])
    assert sorted(p.key for p in people) == ["connection:wh:1", "connection:wh:2"]


ids = st.builds(
    lambda i, rid, email, puid, name, link: conn(
        f"c{i}", rid=rid, email=email, puid=puid, name=name, links={link} if link else ()
    ),
    st.integers(0, 10**6),
    st.sampled_from([None, None, "R1", "R2"]),
    st.sampled_from([None, None, "a@x.org", "B@x.org", "b@x.org"]),
    st.sampled_from([None, None, "U1"]),
    st.sampled_from([None, "Ann", "Bob", "ann"]),
    st.sampled_from([None, None, "L1", "L2"]),
)


@given(st.lists(ids, max_size=12, unique_by=lambda c: c.ref), st.randoms(use_true_random=False))
def test_grouping_is_deterministic_whatever_the_order(items, rnd):
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert groups(shuffled) == groups(items)
    people = group_people(items)
    assert sorted(i for p in people for i in p.members) == list(range(len(items)))  # each connection once
    assert len({p.key for p in people}) == len(people)


@given(st.lists(ids, max_size=12, unique_by=lambda c: c.ref))
def test_no_two_people_share_a_strong_identifier(items):
    seen: dict[str, str] = {}
    for p in group_people(items):
        for token in [
            *("r" + r for r in p.registrant_ids),
            *("e" + e for e in p.emails),
            *("u" + u for u in p.participant_user_ids),
        ]:
            assert seen.setdefault(token, p.key) == p.key
        if p.identity == NAME:
            assert not any(items[i].strong for i in p.members)


def test_a_name_wins_over_a_phone_number_at_equal_counts():
    people = group_people([conn("web", rid="R1", name="Ivy"), conn("phone", rid="R1", name="+1 555 0100")])
    assert people[0].name == "Ivy"
    twice = group_people(
        [
            conn("a", rid="R1", name="+1 555 0100"),
            conn("b", rid="R1", name="+1 555 0100"),
            conn("c", rid="R1", name="Ivy"),
        ]
    )
    assert twice[0].name == "+1 555 0100"  # seen most often
