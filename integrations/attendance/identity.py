"""Which connections are the same person (issue 4, "A person"). Pure: plain values only.

Strong identifiers (registrant id, email, participant_user_id) join connections
transitively; connections with none are grouped by exact name as weak people, never merged
into strong ones by name (docs/internals.md says why)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Identity kinds, strongest first: the kind and key come from the strongest id present.
REGISTRANT, EMAIL, USER, NAME = "registrant", "email", "user", "name"


@dataclass(frozen=True, slots=True)
class Identifiers:
    """What one connection says about who it is (tuples without repeats: 100,000 of these per refresh)."""

    registrant_ids: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()  # already lower-cased by `normalize_email`
    participant_user_ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()  # display names seen on the connection, in order
    links: tuple[str, ...] = ()  # per-connection ids: same token, same connection
    ref: str = ""  # stable reference of the connection, for keys of nameless weak people

    @property
    def strong(self) -> bool:
        return bool(self.registrant_ids or self.emails or self.participant_user_ids)


@dataclass(slots=True)
class Person:
    """One person: the connections merged into them and how they were identified."""

    key: str
    identity: str
    members: list[int]
    name: str | None
    registrant_ids: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    participant_user_ids: list[str] = field(default_factory=list)


def normalize_email(value: str | None) -> str | None:
    """An email as an identifier: trimmed and lower-cased; empty means none."""
    if not value:
        return None
    value = value.strip().lower()
    return value or None


def _find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]  # path halving keeps 100,000 connections near linear
        x = parent[x]
    return x


def _looks_like_a_number(name: str) -> bool:
    return not any(c.isalpha() for c in name)  # a dial-in shows its phone number as its name


def canonical_name(names: Iterable[str | None]) -> str | None:
    """The display name seen most often; ties go to a name over a phone number, then alphabetically."""
    present = [n for n in names if n]
    if not present:
        return None
    if len(set(present)) == 1:
        return present[0]  # the usual case, without a Counter for each of 20,000 people
    counts = Counter(present)
    if not counts:
        return None
    return min(counts, key=lambda n: (-counts[n], _looks_like_a_number(n), n))


def group_people(
    items: Sequence[Identifiers], *, same_registrant: Iterable[tuple[str, str | None]] = ()
) -> list[Person]:
    """Group connections into people; returns them sorted by key.

    `same_registrant` holds (registrant_id, email) pairs from the registrant list: one
    registration ties that id and that email to one person.
    """
    # Union-find over connection indexes; a token's first holder stands for the token.
    n = len(items)
    parent = list(range(n))
    holder: dict[str, int] = {}

    def join(token: str, i: int) -> None:
        first = holder.setdefault(token, i)
        if first != i:
            a, b = _find(parent, first), _find(parent, i)
            if a != b:
                parent[b] = a

    setdefault = holder.setdefault
    for i, ids in enumerate(items):
        for prefix, values in (
            ("r\0", ids.registrant_ids),
            ("e\0", ids.emails),
            ("u\0", ids.participant_user_ids),
            ("l\0", ids.links),
        ):
            for value in values:
                first = setdefault(prefix + value, i)  # join(), inlined: 500,000 tokens per refresh
                if first != i:
                    a, b = _find(parent, first), _find(parent, i)
                    if a != b:
                        parent[b] = a
    for registrant_id, email in same_registrant:
        email = normalize_email(email)
        if registrant_id and email:
            # A node of its own per registration, so its id and email meet even when no
            # connection carries both; it belongs to no person.
            node = len(parent)
            parent.append(node)
            join("r\0" + registrant_id, node)
            join("e\0" + email, node)

    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(_find(parent, i), []).append(i)

    people: list[Person] = []
    weak_by_name: dict[str, list[int]] = {}
    for members in groups.values():
        if any(items[i].strong for i in members):
            people.append(_strong_person(items, members))
            continue
        name = canonical_name(x for i in members for x in items[i].names)
        if name is None:
            ref = min(items[i].ref for i in members)
            people.append(Person(f"connection:{ref}", NAME, sorted(members), None))
        else:
            weak_by_name.setdefault(name, []).extend(members)
    for name, members in weak_by_name.items():
        people.append(Person(f"name:{name}", NAME, sorted(members), name))
    people.sort(key=lambda p: p.key)
    return people


def _strong_person(items: Sequence[Identifiers], members: list[int]) -> Person:
    registrant_ids = sorted({v for i in members for v in items[i].registrant_ids})
    emails = sorted({v for i in members for v in items[i].emails})
    user_ids = sorted({v for i in members for v in items[i].participant_user_ids})
    if registrant_ids:
        identity, key = REGISTRANT, f"registrant:{registrant_ids[0]}"
    elif emails:
        identity, key = EMAIL, f"email:{emails[0]}"
    else:
        identity, key = USER, f"user:{user_ids[0]}"
    name = canonical_name(n for i in members for n in items[i].names)
    return Person(key, identity, sorted(members), name, registrant_ids, emails, user_ids)
