"""Mail: a durable queue in the accounts schema and a relay that sends it over SMTP.

A mail is decided in a transaction (a sign-up, a settled period's notice) and written in that
same transaction to ``accounts.mail_queue`` under a key naming what it is about
(``confirm:<link id>``, ``period-settled:2026-11:42``): the insert does nothing when the key is
there already, so an event handled twice (redelivery) queues its mail once. Nothing is sent
inside the transaction, so a rolled-back change mails nobody.

The relay (a background thread of every accounts process, like the event outbox's) takes due
mails one at a time with ``FOR UPDATE SKIP LOCKED`` (replicas never send the same row at once),
hands each to the SMTP server and marks it sent in the same database transaction. While the
server is away, a mail is tried again after a growing pause (5 s doubling, at most 15 minutes)
for ``MAIL_GIVE_UP_HOURS``, then marked failed; a mail the server refuses for good (a 5xx
answer) is marked failed at once. If the process dies after the server accepted a mail and
before the mark commits, that one mail is sent again on restart; it carries the same
``Message-ID`` both times, so mail clients show it once.
"""
from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr

from sqlalchemy import text

from services.common import settings
from services.common.db import engine_for
from services.common.relay_thread import WokenRelay

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 900
MAX_RELAY_PAUSE = 60.0


def link(path: str, environ: dict | None = None) -> str:
    """An absolute link to a page of the platform, for a mail: ``FLATTR_PUBLIC_URL``, or the
    gateway's local address in development."""
    base = settings.get("FLATTR_PUBLIC_URL", environ) or f"http://127.0.0.1:{settings.get('GATEWAY_PORT', environ)}"
    return base.rstrip("/") + path


def queue(session, key: str, to_address: str, subject: str, body: str, user_id: int | None = None) -> bool:
    """Queue a mail in the session's transaction; False when one with this key was queued before."""
    inserted = session.execute(
        text(
            "INSERT INTO accounts.mail_queue (key, user_id, to_address, subject, body) VALUES (:k, :u, :t, :s, :b) "
            "ON CONFLICT (key) DO NOTHING RETURNING id"
        ),
        {"k": key, "u": user_id, "t": to_address, "s": subject, "b": body},
    ).scalar()
    return inserted is not None


def retry_delay(attempts: int) -> int:
    """Seconds before the next try of a mail that failed ``attempts`` times."""
    return min(FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0), MAX_RETRY_SECONDS)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # none, starttls or tls
    username: str | None
    password: str | None
    timeout: float
    sender: str

    @classmethod
    def from_config(cls, config: dict) -> "SmtpSettings":
        def value(name):
            return settings.setting(config, name)

        security = (value("SMTP_SECURITY") or "none").lower()
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"SMTP_SECURITY must be none, starttls or tls, not {security!r}")
        return cls(value("SMTP_HOST"), int(value("SMTP_PORT")), security, value("SMTP_USERNAME"), value("SMTP_PASSWORD"),
                   float(value("SMTP_TIMEOUT")), value("MAIL_FROM"))

    def connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                client.starttls(context=ssl.create_default_context())
        if self.username:
            client.login(self.username, self.password or "")
        return client


def message(row, sender: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = row.to_address
    mail["Subject"] = row.subject
    mail["Date"] = formatdate(row.created_at.timestamp(), usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{row.id}.{hashlib.sha256(row.key.encode()).hexdigest()[:16]}@{domain}>"
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(row.body)
    return mail


class MailRelay:
    """Sends due mails from the queue. Usable on its own (tests, an operator's shell)."""

    def __init__(self, db_url: str, smtp: SmtpSettings, give_up_hours: float):
        self.engine = engine_for(db_url)
        self.smtp = smtp
        self.give_up_hours = give_up_hours

    def send_due(self) -> tuple[int, bool]:
        """Send every due mail; returns (how many were sent, whether the server was reachable)."""
        client = None
        sent = 0
        try:
            while True:
                with self.engine.begin() as conn:
                    row = conn.execute(
                        text(
                            "SELECT id, key, to_address, subject, body, created_at, attempts FROM accounts.mail_queue "
                            "WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now() "
                            "ORDER BY next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
                        )
                    ).first()
                    if row is None:
                        return sent, True
                    try:
                        client = client or self.smtp.connect()
                        client.send_message(message(row, self.smtp.sender))
                    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                        permanent = _smtp_code(exc) >= 500
                        self._failed(conn, row, exc, permanent)
                        if not permanent:
                            return sent, True
                        continue
                    except (OSError, smtplib.SMTPException) as exc:
                        client = _close(client)
                        self._failed(conn, row, exc, permanent=False)
                        return sent, False
                    conn.execute(
                        text("UPDATE accounts.mail_queue SET sent_at = now(), attempts = attempts + 1, last_error = '' WHERE id = :i"),
                        {"i": row.id},
                    )
                    sent += 1
        finally:
            _close(client)

    def _failed(self, conn, row, exc: BaseException, permanent: bool) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.warning("mail %s to %s not sent (attempt %d): %s", row.key, row.to_address, row.attempts + 1, reason)
        conn.execute(
            text(
                "UPDATE accounts.mail_queue SET attempts = attempts + 1, last_error = :e, "
                "next_attempt_at = now() + make_interval(secs => :d), "
                "failed_at = CASE WHEN :permanent OR created_at < now() - CAST(:h AS double precision) * interval '1 hour' THEN now() END "
                "WHERE id = :i"
            ),
            {"i": row.id, "e": reason, "d": retry_delay(row.attempts + 1), "permanent": permanent, "h": self.give_up_hours},
        )


def _smtp_code(exc: smtplib.SMTPException) -> int:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return min((code for code, _ in exc.recipients.values()), default=0)
    return int(getattr(exc, "smtp_code", 0) or 0)


def _close(client):
    if client is not None:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()
    return None


class MailQueue(WokenRelay):
    """``mail = MailQueue("ACCOUNTS_DATABASE_URL")`` on a service: ``self.mail.queue(self.db, key,
    to, subject, body)`` queues a mail in the worker's transaction and wakes the relay when it
    commits. Unless ``MAIL_RELAY`` is ``off``, the relay runs in a background thread."""

    def __init__(self, url_key: str):
        super().__init__()
        self.url_key = url_key

    def setup(self):
        config = self.container.config
        self.relay = MailRelay(config[self.url_key], SmtpSettings.from_config(config), float(settings.setting(config, "MAIL_GIVE_UP_HOURS")))
        self.enabled = str(settings.setting(config, "MAIL_RELAY")).lower() != "off"

    def _run(self):
        pause = POLL_SECONDS
        while self._running:
            try:
                _, reachable = self.relay.send_due()
                pause = POLL_SECONDS if reachable else min(pause * 2, MAX_RELAY_PAUSE)
            except Exception:
                log.exception("mail relay failed; retrying")
                pause = min(pause * 2, MAX_RELAY_PAUSE)
            self._wake.wait(pause)
            self._wake.clear()

    def get_dependency(self, worker_ctx):
        return _Queue(self)


class _Queue:
    def __init__(self, relay: MailQueue):
        self._relay = relay

    def queue(self, session, key: str, to_address: str, subject: str, body: str, user_id: int | None = None) -> bool:
        queued = queue(session, key, to_address, subject, body, user_id)
        if queued:
            self._relay.wake_after_commit(session)
        return queued
