"""The demo outbox: account mail that was not sent over SMTP, readable outside production.

In demo and test mode there is no mail server; the demo's visitors and the tests read their
confirmation and reset links here. Production answers 404: mail there is only sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints
from sqlalchemy import select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.db.models import MailMessage
from control_api.problems import not_found

routes = ApiRoutes()
TAGS = ("demo",)


class OutboxQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: EmailStr
    kind: Annotated[str, StringConstraints(pattern=r"^[a-z\-]{1,40}$")] | None = None
    limit: int = Field(default=20, ge=1, le=100)


class MailOut(BaseModel):
    id: str
    to: str
    kind: str
    subject: str
    body: str
    created_at: datetime
    sent_at: datetime | None


@routes.get("/v1/demo/mail", summary="Read the demo outbox (not in production)", roles=PUBLIC, tags=TAGS,
            query=OutboxQuery, response=list[MailOut])
async def read_outbox(req: ApiRequest[Any, OutboxQuery]) -> list[MailOut]:
    """Newest first. Anyone may read it because demo accounts are not real people's."""
    if not req.ctx.settings.test_clock_enabled:
        raise not_found("the demo outbox (production sends mail and keeps no readable copy)")
    q = req.query
    stmt = select(MailMessage).where(MailMessage.to_address == str(q.to).strip().lower())
    if q.kind:
        stmt = stmt.where(MailMessage.kind == q.kind)
    rows = (await req.session.scalars(stmt.order_by(MailMessage.created_at.desc(), MailMessage.id)
                                      .limit(q.limit))).all()
    return [MailOut(id=m.id, to=m.to_address, kind=m.kind, subject=m.subject, body=m.body_text,
                    created_at=m.created_at, sent_at=m.sent_at) for m in rows]
