"""Emailing certificates over SMTP: rate-limited, resumable, never twice to anyone (issue 17).

Each attempt is recorded 'sending' (durably) before the SMTP conversation and 'sent',
'refused' (the server's 5xx answer) or 'failed' (4xx, connection) after it. A crash leaves
'sending' rows; the next run turns them into 'in_doubt' and does NOT send them again: the
server may have accepted the message (a crash after its 250 to DATA but before our write is
indistinguishable from one before). Resending those is the operator's decision, after
checking the server's log for the stable Message-ID: `send --resend-in-doubt`. Errors
before DATA ('refused' at MAIL/RCPT, 'failed') cannot have delivered anything; 'failed' is
retried by the next run, 'refused' is not (the address was refused).
"""

from __future__ import annotations

import email.policy
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from store import certificates as store
from store.db import Store

TIMEOUT_SECONDS = 30.0


class MailConfigError(Exception):
    "The SMTP settings are incomplete"


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send: host, port, login, sender, STARTTLS."""

    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = True


@dataclass
class SendReport:
    """Counts of one `send` run, and the certificates whose delivery is in doubt."""

    sent: int = 0
    refused: int = 0
    failed: int = 0
    in_doubt: list[int] = field(default_factory=list)
    skipped_in_doubt: int = 0


def message_id(row: dict[str, Any], sender: str) -> str:
    """A Message-ID fixed per certificate, so a resend is recognisably the same message."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "attendance-worker.invalid"
    return f"<certificate-{row['number']}-{row['code'][:16]}@{domain}>"


def certificate_message(row: dict[str, Any], pdf: bytes, *, sender: str, verify_url: str) -> EmailMessage:
    """The email of one certificate: a short text and the PDF attached."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["email"]
    event = row.get("event") or "the event"
    message["Subject"] = f"Your certificate: {event}"
    message["Message-ID"] = message_id(row, sender)
    message.set_content(
        f"Dear {row['name']},\n\nyour certificate of attendance for {event} is attached "
        f"(certificate no. {row['number']}).\n\nAnyone can check it at:\n{verify_url}\n"
    )
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"certificate-{row['number']}.pdf")
    return message


class Mailer:
    """One SMTP connection, opened on first use and reopened after the server drops it."""

    def __init__(self, settings: SmtpSettings):
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        smtp = smtplib.SMTP(s.host, s.port, timeout=TIMEOUT_SECONDS)
        smtp.ehlo()
        if s.starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if s.username:
            smtp.login(s.username, s.password or "")
        return smtp

    def deliver(self, message: EmailMessage) -> tuple[str, str]:
        """('sent' | 'refused' | 'failed' | 'in_doubt', the server's answer) for one message."""
        recipient = message["To"]
        try:
            smtp = self._smtp = self._smtp or self._connect()
            code, answer = smtp.mail(self.settings.sender)
            if code != 250:
                return self._answer(code, answer)
            code, answer = smtp.rcpt(recipient)
            if code not in (250, 251):
                smtp.rset()
                return self._answer(code, answer)
        except (smtplib.SMTPException, OSError) as e:
            self.close()
            return "failed", f"before DATA: {e}"
        try:
            # CRLF line ends: smtplib passes bytes through as they are, and SMTP requires CRLF.
            code, answer = smtp.data(message.as_bytes(policy=email.policy.SMTP))
        except smtplib.SMTPDataError as e:  # DATA itself refused: nothing was transferred
            return self._answer(e.smtp_code, e.smtp_error)
        except (TimeoutError, smtplib.SMTPException, OSError) as e:
            self.close()
            return "in_doubt", f"connection lost during DATA: {e}"
        return self._answer(code, answer)

    @staticmethod
    def _answer(code: int, answer: bytes | str) -> tuple[str, str]:
        text = f"{code} {answer.decode('utf-8', 'replace') if isinstance(answer, bytes) else answer}"
        if code == 250:
            return "sent", text
        return ("refused" if code >= 500 else "failed"), text

    def close(self) -> None:
        """Say QUIT (or just close) and forget the connection."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


class RateLimit:
    """At most `per_minute` calls a minute, evenly spaced (clock and sleep injectable for tests)."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0

    def wait(self) -> None:
        """Block until the next call is allowed."""
        now = self.clock()
        if now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def _valid_address(address: str) -> bool:
    name, parsed = parseaddr(address)
    return bool(parsed) and parsed == address.strip() and "@" in parsed and not any(c in address for c in "\r\n")


def send_certificates(
    db: Store,
    meeting_id: str,
    *,
    mailer: Mailer,
    sender: str,
    render_pdf: Callable[[dict[str, Any]], bytes],
    verify_url: Callable[[dict[str, Any]], str],
    rate: RateLimit,
    resend_in_doubt: bool = False,
    progress: Callable[[dict[str, Any], str], None] | None = None,
) -> SendReport:
    """Email every live certificate of the meeting not yet sent; see the module docstring for crashes."""
    report = SendReport()
    interrupted = store.mark_interrupted_sends(db, meeting_id)
    report.in_doubt.extend(r["number"] for r in interrupted)
    if resend_in_doubt:
        store.release_in_doubt(db, meeting_id)
        report.in_doubt.clear()
    report.skipped_in_doubt = sum(1 for r in store.send_attempts(db, meeting_id) if r["status"] == "in_doubt")
    try:
        for row in store.certificates_to_send(db, meeting_id):
            if not _valid_address(row["email"]):
                send_id = store.start_send(db, row["number"], row["email"], message_id(row, sender))
                store.finish_send(db, send_id, "refused", "not a valid email address (not sent)")
                report.refused += 1
                continue
            message = certificate_message(row, render_pdf(row), sender=sender, verify_url=verify_url(row))
            rate.wait()
            send_id = store.start_send(db, row["number"], row["email"], message["Message-ID"])
            status, answer = mailer.deliver(message)
            store.finish_send(db, send_id, status, answer)
            if status == "in_doubt":
                report.in_doubt.append(row["number"])
            else:
                setattr(report, status, getattr(report, status) + 1)
            if progress:
                progress(row, status)
    finally:
        mailer.close()
    return report
