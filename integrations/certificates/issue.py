"""Issuing, reissuing and checking certificates: eligibility, signing and the store, put together."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from integrations.certificates.eligibility import Eligible
from integrations.certificates.names import is_phone_number, why_no_name
from integrations.certificates.render import printable
from integrations.certificates.signing import CertificateContent, InvalidCode, key_id, sign_content, verify_code
from store import certificates as store
from store.db import Store


@dataclass(frozen=True)
class IssueOutcome:
    """What `issue` did: the meeting, the rules, numbers issued, people skipped and why.

    `phone_named` lists live certificates issued before phone numbers were refused as names:
    they stay as issued (and verifiable) until revoked, so `issue` reports them.
    """

    meeting_id: str
    instance_uuid: str
    rules: dict[str, Any]
    eligible: int
    issued: list[int]
    already: int
    without_name: int
    phone_as_name: int
    phone_named: list[int]


def content_of(row: dict[str, Any]) -> CertificateContent:
    """What a stored certificate's code signs."""
    return CertificateContent(
        number=row["number"],
        meeting_id=row["meeting_id"],
        date=row["date"],
        attended_minutes=row["attended_minutes"],
        score=row["score"],
        name=row["name"],
    )


def signer(key: Ed25519PrivateKey) -> store.Signer:
    """The store's Signer for this key."""
    return lambda number, row: sign_content(content_of({**row, "number": number}), key)


def issue_to_eligible(db: Store, found: Eligible, *, key: Ed25519PrivateKey, event: str | None = None) -> IssueOutcome:
    """Issue a certificate to each person `found` eligible who has none yet (idempotent)."""
    info = found.meeting
    rules = json.dumps(found.rules, sort_keys=True)
    date = (info["start_time"] or info["end_time"] or "")[:10]
    title = printable(event or info["topic"] or "")
    fingerprint = key_id(key)
    candidates, skipped = [], {"without a name": 0, "a phone number as name": 0}
    for person in found.people:
        name = printable(person["name"])
        why = why_no_name(name)
        if why:
            # Nothing to print: an email or a dial-in number must never stand in for a name.
            skipped[why] += 1
            continue
        candidates.append(
            {
                "instance_uuid": info["instance_uuid"],
                "person_key": person["person_key"],
                "email": person["email"],
                "name": name,
                "event": title,
                "date": date,
                # Whole minutes, rounded down: a certificate never claims more than the evidence.
                "attended_minutes": person["attended_seconds"] // 60,
                "score": None if person["score"] is None else str(person["score"]),
                "stage": found.rules["stage"],
                "rules": rules,
                "key_id": fingerprint,
            }
        )
    result = store.issue_certificates(db, candidates, meeting_id=info["meeting_id"], sign=signer(key))
    return IssueOutcome(
        info["meeting_id"],
        info["instance_uuid"],
        found.rules,
        len(found.people),
        result.issued,
        result.already,
        skipped["without a name"],
        skipped["a phone number as name"],
        phone_named_certificates(store.list_certificates(db, info["meeting_id"])),
    )


def phone_named_certificates(rows: list[dict[str, Any]]) -> list[int]:
    """Numbers of the live certificates among `rows` that print a phone number as the name."""
    return [r["number"] for r in rows if r["revoked_at"] is None and is_phone_number(r["name"])]


def reissue(db: Store, number: int, name: str, *, key: Ed25519PrivateKey) -> dict[str, Any]:
    """Revoke certificate `number` and issue a replacement printing `name`; the new row."""
    printed = printable(name)
    if not printed:
        raise ValueError("the corrected name is empty")
    if is_phone_number(printed):
        raise ValueError("the corrected name is a phone number: a certificate never prints contact data")
    return store.reissue_certificate(db, number, printed, sign=signer(key), key_id=key_id(key))


@dataclass(frozen=True)
class Verdict:
    """A code's check: valid (signed, issued here, not revoked), revoked, and the certificate."""

    valid: bool
    revoked: bool
    content: CertificateContent
    row: dict[str, Any] | None

    def public(self) -> dict[str, Any]:
        """What anyone may see: never the email, person key or rules."""
        row = self.row or {}
        return {
            "valid": self.valid,
            "revoked": self.revoked,
            "number": self.content.number,
            "name": self.content.name,
            "event": row.get("event"),
            "date": self.content.date,
            "attended_minutes": self.content.attended_minutes,
            "score": self.content.score,
            "revoked_at": row.get("revoked_at"),
        }


def check_code(db: Any, code: str, public_key: Ed25519PublicKey) -> Verdict:
    """Verify a code's signature, then that this service issued exactly it and has not revoked it.

    Raises InvalidCode for a forged or altered code, or one signed but never stored here.
    """
    content = verify_code(code, public_key)
    if db is None:
        return Verdict(True, False, content, None)
    row = store.find_by_number_and_code(db, content.number, code.strip())
    if row is None:
        raise InvalidCode("no certificate with this code was issued by this service")
    revoked = row["revoked_at"] is not None
    return Verdict(not revoked, revoked, content, row)
