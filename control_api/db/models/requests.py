"""Request bookkeeping: stored answers of idempotent requests and the test clock's offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, id_column
from control_api.db.types import UTCDateTime


class IdempotentResponse(Base):
    """The stored answer to a money-moving request, replayed when the same key comes again."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[str] = id_column()
    principal: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClockState(Base):
    """The persisted offset of the test clock (always zero in production)."""

    __tablename__ = "clock_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset_seconds: Mapped[int] = mapped_column(BigInteger, default=0)
