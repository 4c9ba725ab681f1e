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

import base64
import email.policy
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Any

from integrations.config import Config
from store import certificates as store
from store.db import Store

TIMEOUT_SECONDS = 30.0


class MailConfigError(Exception):
    "The SMTP settings are incomplete"


class SmtpUnavailable(Exception):
    "Could not connect to the SMTP server, start TLS with it or log in: nothing more is sent this run"


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


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """What STARTTLS verifies the server with: the system's CAs, or only those in `ca_file` (PEM)."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise MailConfigError(f"SMTP_CA_FILE {ca_file}: cannot read its certificates ({e})") from None


def login(smtp: smtplib.SMTP, username: str, password: str) -> None:
    """Log in; SMTPAuthenticationError with the server's answer when refused. Never logs the password."""
    if username.isascii() and password.isascii():
        smtp.login(username, password)  # smtplib picks CRAM-MD5, PLAIN or LOGIN (debuglevel 0: no echo)
        return
    # smtplib encodes credentials as ASCII (a UnicodeEncodeError otherwise); AUTH PLAIN
    # carries UTF-8 (RFC 4616), so a password with non-ASCII letters goes that way.
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode("ascii")
    code, answer = smtp.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, answer)


class Mailer:
    """One SMTP connection to the configured server (SMTP_*), opened on first use and reopened after a drop."""

    def __init__(self, config: Config):
        missing = [
            name for name, value in (("SMTP_HOST", config.smtp_host), ("SMTP_FROM", config.smtp_from)) if not value
        ]
        if missing:
            raise MailConfigError(f"set {' and '.join(missing)} (see config.example.env) to send certificates")
        self.config = config
        self.host, self.port, self.sender = config.smtp_host or "", config.smtp_port, config.smtp_from or ""
        self.tls_context = tls_context(config.smtp_ca_file) if config.smtp_starttls else None
        self._smtp: smtplib.SMTP | None = None

    def connect(self) -> None:
        """Have a connection ready (STARTTLS and login done); SmtpUnavailable when that fails."""
        if self._smtp is None:
            try:
                self._smtp = self._open()
            except (smtplib.SMTPException, OSError) as e:  # ssl.SSLError is an OSError
                raise SmtpUnavailable(f"SMTP server {self.host}:{self.port}: {e}") from None

    def _open(self) -> smtplib.SMTP:
        c = self.config
        smtp = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
        try:
            smtp.ehlo()
            if self.tls_context is not None:
                smtp.starttls(context=self.tls_context)  # verifies the server before we log in
                smtp.ehlo()
            if c.smtp_username:
                login(smtp, c.smtp_username, c.smtp_password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def deliver(self, message: EmailMessage) -> tuple[str, str]:
        """('sent' | 'refused' | 'failed' | 'in_doubt', the server's answer) for one message."""
        recipient = message["To"]
        try:
            smtp = self._smtp = self._smtp or self._open()
            code, answer = smtp.mail(self.sender)
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
    render_pdf: Callable[[dict[str, Any]], bytes],
    verify_url: Callable[[dict[str, Any]], str],
    rate: RateLimit,
    resend_in_doubt: bool = False,
    progress: Callable[[dict[str, Any], str], None] | None = None,
) -> SendReport:
    """Email every live certificate of the meeting not yet sent; see the module docstring for crashes."""
    sender = mailer.sender
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
            mailer.connect()  # a server we cannot reach or log in to ends the run: no attempt begun
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
