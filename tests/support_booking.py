"""Helpers for booking tests: times on the 15-minute grid and one-call bookings."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.support import Api, As, Response


def at(api: Api, *, days: float = 2, hours: float = 0, minutes: int = 0) -> datetime:
    """An instant `days` from the (test) clock's now, on the 15-minute grid."""
    base = api.ctx.clock.now() + timedelta(days=days, hours=hours)
    base = base.replace(minute=(base.minute // 15) * 15, second=0, microsecond=0)
    return base + timedelta(minutes=minutes)


async def book(visitor: As, resident_id: str, starts_at: datetime, *, length: int = 30, visit_type: str = "social",
               token: str | None = "tok_visa", use_credit: bool = True, key: str | bool = True) -> Response:
    body: dict[str, Any] = {"resident_id": resident_id, "starts_at": starts_at.isoformat(), "length_minutes": length,
                            "visit_type": visit_type, "payment": {"card_token": token, "use_credit": use_credit}}
    return await visitor.post("/v1/visits", body, idempotency_key=key)
