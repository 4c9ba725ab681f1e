"""E-certificates in SQL: issued certificates, their hash-chained events, and email sends (issue 17).

Issuance and revocation are evidence too, so each is an event in `certificate_events`, a
hash chain of its own built like raw_records' (store/evidence.py: chain_hash over the
previous event's chain hash, the event body's SHA-256 and its time). Each event body
names the raw_records chain head at that moment, so an issuance is pinned to the state
of the attendance evidence it was computed from. It is a separate chain because
raw_records holds what arrived from Zoom (its `source` CHECK allows only webhook and
report), while certificates are what we concluded; `worker.py verify` checks both.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from store.db import Store, durable_write
from store.evidence import GENESIS, chain_hash, utc_now


class CertificateNotFound(Exception):
    "No certificate has that number"


class CertificateRevoked(Exception):
    "The certificate is already revoked"


class CertificateChainError(Exception):
    "The certificate events do not match their hash chain"


# Signs a certificate: gets its number and row (the row's fields as stored) and returns its code.
Signer = Callable[[int, dict[str, Any]], str]

CERTIFICATE_FIELDS = (
    "number",
    "meeting_id",
    "instance_uuid",
    "person_key",
    "email",
    "name",
    "event",
    "date",
    "attended_minutes",
    "score",
    "stage",
    "rules",
    "key_id",
    "code",
    "issued_at",
    "revoked_at",
    "revoked_reason",
    "replaces",
    "replaced_by",
)


@dataclass(frozen=True)
class IssueResult:
    """Numbers issued now, and how many people already had a certificate."""

    issued: list[int]
    already: int


# Certificates with `sent`: when their email was accepted (the latest 'sent' attempt).
_WITH_SENT = (
    "SELECT c.*, (SELECT max(finished_at) FROM certificate_sends s WHERE s.number = c.number "
    "AND s.status = 'sent') AS sent FROM certificates c "
)
# The send attempts of one meeting's certificates.
_SENDS_OF_MEETING = (
    "SELECT s.* FROM certificate_sends s JOIN certificates c ON c.number = s.number WHERE c.meeting_id = ? "
)


def _rows(db: Store, sql: str, params: Any = ()) -> list[dict[str, Any]]:
    cursor = db.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _evidence_head(conn) -> str:
    row = conn.execute("SELECT chain_hash FROM raw_records ORDER BY id DESC LIMIT 1").fetchone()
    return row[0] if row else GENESIS


def _event_body(action: str, at: str, evidence_head: str, row: dict[str, Any], **extra: Any) -> bytes:
    """Canonical JSON of an event: sorted keys, no spaces, UTF-8 (one byte string per event)."""
    body = {"action": action, "at": at, "evidence_head": evidence_head, "certificate": row, **extra}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _Chain:
    """Appends events inside one write transaction, carrying the head along."""

    def __init__(self, conn) -> None:
        self.conn = conn
        last = conn.execute("SELECT chain_hash FROM certificate_events ORDER BY id DESC LIMIT 1").fetchone()
        self.head = last[0] if last else GENESIS
        self.rows: list[tuple] = []

    def add(self, number: int, action: str, at: str, body: bytes) -> None:
        sha = hashlib.sha256(body).hexdigest()
        self.head = chain_hash(self.head, sha, at)
        self.rows.append((number, action, at, body, sha, self.head))

    def flush(self) -> None:
        self.conn.executemany(
            "INSERT INTO certificate_events (number, action, at, body, sha256, chain_hash) VALUES (?, ?, ?, ?, ?, ?)",
            self.rows,
        )
        self.rows.clear()


def _insert(conn, row: dict[str, Any]) -> None:
    names = [f for f in CERTIFICATE_FIELDS if f in row]
    conn.execute(
        f"INSERT INTO certificates ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
        [row[n] for n in names],
    )


def issue_certificates(
    db: Store,
    candidates: Iterable[dict[str, Any]],
    *,
    meeting_id: str,
    sign: Signer,
    issued_at: str | None = None,
) -> IssueResult:
    """Issue one certificate per candidate who has none for this meeting (live or revoked); idempotent.

    A candidate is a dict with person_key, email, name, event, date, attended_minutes, score,
    stage, rules (JSON text), key_id and instance_uuid. A revoked certificate is not replaced
    here: only `reissue_certificate` does that, so a revocation for cause stays in force.
    """
    at = issued_at or utc_now()
    with durable_write(db, timeout=max(db.lock_timeout, 30)) as conn:
        have = {r[0] for r in conn.execute("SELECT person_key FROM certificates WHERE meeting_id = ?", [meeting_id])}
        number = conn.execute("SELECT coalesce(max(number), 0) FROM certificates").fetchone()[0]
        evidence_head = _evidence_head(conn)
        chain = _Chain(conn)
        issued, already = [], 0
        for candidate in candidates:
            if candidate["person_key"] in have:
                already += 1
                continue
            have.add(candidate["person_key"])
            number += 1
            row = {**candidate, "number": number, "meeting_id": meeting_id, "issued_at": at}
            row["code"] = sign(number, row)
            _insert(conn, row)
            chain.add(number, "issued", at, _event_body("issued", at, evidence_head, row))
            issued.append(number)
        chain.flush()
    return IssueResult(issued, already)


def get_certificate(db: Store, number: int) -> dict[str, Any]:
    """The certificate with this number; CertificateNotFound when there is none."""
    rows = _rows(db, "SELECT * FROM certificates WHERE number = ?", [number])
    if not rows:
        raise CertificateNotFound(f"no certificate number {number}")
    return rows[0]


def find_by_number_and_code(db: Store, number: int, code: str) -> dict[str, Any] | None:
    """The stored certificate that carries exactly this code, or None."""
    rows = _rows(db, "SELECT * FROM certificates WHERE number = ? AND code = ?", [number, code])
    return rows[0] if rows else None


def revoke_certificate(db: Store, number: int, reason: str, *, at: str | None = None) -> dict[str, Any]:
    """Revoke a live certificate and record the revocation in the chain; the revoked row."""
    at = at or utc_now()
    with durable_write(db) as conn:
        row = _revoke(conn, db, number, reason, at, _Chain(conn))
    return row


def _revoke(conn, db, number: int, reason: str, at: str, chain: _Chain, **extra: Any) -> dict[str, Any]:
    row = get_certificate(db, number)
    if row["revoked_at"] is not None:
        raise CertificateRevoked(f"certificate {number} was revoked at {row['revoked_at']}: {row['revoked_reason']}")
    conn.execute("UPDATE certificates SET revoked_at = ?, revoked_reason = ? WHERE number = ?", [at, reason, number])
    row.update(revoked_at=at, revoked_reason=reason)
    chain.add(number, "revoked", at, _event_body("revoked", at, _evidence_head(conn), row, **extra))
    chain.flush()
    return row


def reissue_certificate(
    db: Store, number: int, name: str, *, sign: Signer, key_id: str, at: str | None = None
) -> dict[str, Any]:
    """Revoke certificate `number` and issue its replacement with `name` printed; the new row."""
    at = at or utc_now()
    with durable_write(db) as conn:
        chain = _Chain(conn)
        old = get_certificate(db, number)
        new_number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM certificates").fetchone()[0]
        _revoke(conn, db, number, f"reissued as {new_number}: name corrected", at, chain, replaced_by=new_number)
        row = {f: old[f] for f in CERTIFICATE_FIELDS if f not in ("revoked_at", "revoked_reason", "replaced_by")}
        row.update(number=new_number, name=name, issued_at=at, key_id=key_id, replaces=number)
        row["code"] = sign(new_number, row)
        _insert(conn, row)
        conn.execute("UPDATE certificates SET replaced_by = ? WHERE number = ?", [new_number, number])
        chain.add(new_number, "issued", at, _event_body("issued", at, _evidence_head(conn), row))
        chain.flush()
    return get_certificate(db, new_number)


def list_certificates(db: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Every certificate of a meeting in number order, with `sent` (when its email was accepted)."""
    return _rows(db, _WITH_SENT + "WHERE c.meeting_id = ? ORDER BY c.number", [meeting_id])


def certificates_of_person(db: Store, meeting_or_instance: str, person: str) -> list[dict[str, Any]]:
    """Certificates of one person (person_key or email, case-insensitive) in a meeting id or instance UUID.

    For the dashboard (issue 15): newest first, revoked ones included with revoked_at set.
    """
    return _rows(
        db,
        _WITH_SENT + "WHERE (c.meeting_id = :m OR c.instance_uuid = :m) "
        "AND (c.person_key = :p OR lower(c.email) = lower(:p)) ORDER BY c.number DESC",
        {"m": meeting_or_instance, "p": person},
    )


def verify_certificate_chain(db: Store) -> tuple[int, str]:
    """Recompute every certificate event's hash and link; (events, head) or CertificateChainError."""
    previous, count = GENESIS, 0
    try:
        cursor = db.execute("SELECT id, at, body, sha256, chain_hash FROM certificate_events ORDER BY id")
    except sqlite3.OperationalError as e:  # a database from before issue 17, opened read-only
        if "no such table" in str(e):
            return 0, GENESIS
        raise
    for event_id, at, body, sha, stored in cursor:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if hashlib.sha256(body).hexdigest() != sha:
            raise CertificateChainError(f"certificate event {event_id}: body does not match its SHA-256 (edited?)")
        previous = chain_hash(previous, sha, at)
        if previous != stored:
            raise CertificateChainError(
                f"certificate event {event_id}: chain hash does not follow (inserted, deleted?)"
            )
        count += 1
    return count, previous


# -- email sends: 'sending' is durable before the SMTP conversation, 'sent' after -----------


def certificates_to_send(db: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Live certificates with an email and no send attempt that may have reached the recipient."""
    return _rows(
        db,
        "SELECT * FROM certificates c WHERE meeting_id = ? AND revoked_at IS NULL AND coalesce(email, '') != '' "
        "AND NOT EXISTS (SELECT 1 FROM certificate_sends s WHERE s.number = c.number "
        "AND s.status IN ('sending', 'sent', 'in_doubt', 'refused')) ORDER BY number",
        [meeting_id],
    )


def mark_interrupted_sends(db: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Turn 'sending' rows left by a crashed run into 'in_doubt'; the rows turned."""
    with durable_write(db) as conn:
        rows = _rows(db, _SENDS_OF_MEETING + "AND s.status = 'sending'", [meeting_id])
        conn.executemany(
            "UPDATE certificate_sends SET status = 'in_doubt', finished_at = ?, "
            "response = 'interrupted after the attempt began: the server may have accepted it' WHERE id = ?",
            [(utc_now(), r["id"]) for r in rows],
        )
    return rows


def release_in_doubt(db: Store, meeting_id: str) -> int:
    """Let in-doubt certificates be sent again (the operator checked the server's log); how many."""
    with durable_write(db) as conn:
        cursor = conn.execute(
            "UPDATE certificate_sends SET status = 'failed', response = coalesce(response, '') || ' (released for resend)' "
            "WHERE status = 'in_doubt' AND number IN (SELECT number FROM certificates WHERE meeting_id = ?)",
            [meeting_id],
        )
        return cursor.rowcount


def start_send(db: Store, number: int, recipient: str, message_id: str) -> int:
    """Record, durably, that an email of certificate `number` is about to be handed to SMTP."""
    with durable_write(db) as conn:
        return conn.execute(
            "INSERT INTO certificate_sends (number, status, recipient, message_id, started_at) "
            "VALUES (?, 'sending', ?, ?, ?) RETURNING id",
            [number, recipient, message_id, utc_now()],
        ).fetchone()[0]


def finish_send(db: Store, send_id: int, status: str, response: str) -> None:
    """Record how an attempt ended: 'sent', 'refused' (the server's answer) or 'failed'."""
    with durable_write(db) as conn:
        conn.execute(
            "UPDATE certificate_sends SET status = ?, response = ?, finished_at = ? WHERE id = ?",
            [status, response, utc_now(), send_id],
        )


def send_attempts(db: Store, meeting_id: str) -> list[dict[str, Any]]:
    """Every send attempt of a meeting's certificates, oldest first."""
    return _rows(db, _SENDS_OF_MEETING + "ORDER BY s.id", [meeting_id])
