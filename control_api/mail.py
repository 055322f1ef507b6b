"""Account mail: one small interface, a durable outbox, SMTP when configured.

A mail is queued in the same database transaction as the change it reports (`queue_mail`), so
it goes out if and only if that change committed, and a crash loses none. `MailDelivery` then
sends what is waiting over SMTP (aiosmtplib), retrying with backoff. Without an SMTP server
(demo and test mode), mail stays in the outbox, where the demo and the tests read it
(`GET /v1/demo/mail`, refused in production).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import MailMessage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12  # about a day of retries with the backoff below, then the mail is left for an operator
SEND_TIMEOUT_SECONDS = 20.0


def queue_mail(session: AsyncSession, *, to: str, kind: str, subject: str, body: str, now: datetime) -> None:
    """Add a mail to the outbox inside the caller's transaction."""
    session.add(MailMessage(to_address=to, kind=kind, subject=subject, body_text=body, created_at=now,
                            attempts=0, next_attempt_at=now))


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min ... capped at 2 h between tries."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 7200))


class MailDelivery:
    """Sends the outbox over SMTP in the background; one instance per API process.

    Several processes may run it: a message is claimed by moving its next attempt forward in a
    write transaction before sending, so two senders do not pick the same mail at once.
    """

    def __init__(self, ctx: AppContext, *, interval: float = 2.0) -> None:
        self._ctx = ctx
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @property
    def configured(self) -> bool:
        return self._ctx.settings.smtp_host is not None

    def start(self) -> None:
        if self.configured:
            self._task = asyncio.create_task(self._run(), name="mail-delivery")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be away; try again next round
                log.warning("mail delivery round failed", exc_info=True)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def deliver_due(self, limit: int = 20) -> int:
        """Send every mail whose time has come; returns how many went out."""
        sent = 0
        for message_id in await self._claim(limit):
            sent += await self._send_one(message_id)
        return sent

    async def _claim(self, limit: int) -> list[str]:
        now = self._ctx.clock.now()
        async with self._ctx.sessions() as session, session.begin():
            rows = (await session.scalars(
                select(MailMessage).where(MailMessage.sent_at.is_(None), MailMessage.attempts < MAX_ATTEMPTS,
                                          or_(MailMessage.next_attempt_at.is_(None),
                                              MailMessage.next_attempt_at <= now))
                .order_by(MailMessage.created_at).limit(limit).with_for_update(skip_locked=True))).all()
            for row in rows:  # claimed: another sender skips it until this try's outcome is written
                row.next_attempt_at = now + timedelta(seconds=SEND_TIMEOUT_SECONDS * 3)
            return [row.id for row in rows]

    async def _send_one(self, message_id: str) -> int:
        settings = self._ctx.settings
        async with self._ctx.read_sessions() as session:
            message = await session.get(MailMessage, message_id)
            if message is None or message.sent_at is not None:
                return 0
            email = EmailMessage()
            email["From"] = settings.mail_from
            email["To"] = message.to_address
            email["Subject"] = message.subject
            email.set_content(message.body_text)
        error: str | None = None
        try:
            await aiosmtplib.send(
                email, hostname=settings.smtp_host, port=settings.smtp_port,
                username=settings.smtp_username, password=settings.smtp_password,
                use_tls=settings.smtp_security == "tls", start_tls=settings.smtp_security == "starttls",
                timeout=SEND_TIMEOUT_SECONDS)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("mail %s to %s not sent: %s", message_id, message.to_address, error)
        now = self._ctx.clock.now()
        async with self._ctx.sessions() as session, session.begin():
            row = await session.get(MailMessage, message_id)
            if row is None:
                return 0
            row.attempts += 1
            if error is None:
                row.sent_at = now
                row.last_error = None
            else:
                row.last_error = error
                row.next_attempt_at = now + backoff(row.attempts)
                if row.attempts >= MAX_ATTEMPTS:
                    log.error("mail %s to %s given up after %d attempts: %s", message_id, row.to_address,
                              row.attempts, error)
        return 1 if error is None else 0
