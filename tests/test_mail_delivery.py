"""Account mail goes out over real SMTP (aiosmtpd on loopback), once, and survives a mail server outage."""

from __future__ import annotations

import socket
from datetime import timedelta
from email import message_from_bytes
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import select

from control_api.db.models import MailMessage
from control_api.mail import MailDelivery
from openvisit.settings import Settings
from tests.support import Api


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_mail_is_sent_once_over_smtp_and_retried_after_an_outage(api: Api, settings: Settings) -> None:
    port = free_port()
    settings.smtp_host, settings.smtp_port, settings.smtp_security = "127.0.0.1", port, "none"
    delivery = MailDelivery(api.ctx)
    (await api.anonymous.post("/v1/auth/password-reset", {"email": "nobody@example.org"})).ok(202)
    visitor = await api.sign_up(confirm=False)  # queues a confirmation mail
    email = visitor.extra["email"]

    # The mail server is down: nothing is lost, the try is counted and put off.
    assert await delivery.deliver_due() == 0
    async with api.ctx.read_sessions() as session:
        row = await session.scalar(select(MailMessage).where(MailMessage.to_address == email))
    assert row is not None and row.sent_at is None and row.attempts == 1 and row.last_error
    assert row.next_attempt_at is not None and row.next_attempt_at > api.ctx.clock.now()

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        assert await delivery.deliver_due() == 0  # not due yet (backoff)
        await api.advance(await api.operator(), int(timedelta(minutes=1).total_seconds()))
        assert await delivery.deliver_due() == 1
        assert await delivery.deliver_due() == 0  # sent once
    finally:
        controller.stop()
    [(rcpt, message)] = inbox.messages
    assert rcpt == [email] and message["Subject"] == "Confirm your email for openvisit"
    assert "/app/account.html#confirm=" in message.get_payload(decode=True).decode()
    # The outbox shows it as sent (so the demo page can say so).
    [shown] = await api.mail(email, "confirm-email")
    assert shown["sent_at"] is not None
