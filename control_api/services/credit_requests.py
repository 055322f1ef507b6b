"""Credit requests (rule M6): filed by a visitor, decided by the operator within the deadline."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import CreditRequest, Visit
from control_api.problems import conflict, unprocessable
from control_api.services import billing

CLAIMABLE = frozenset({"in_progress", "completed", "disconnected", "failed", "no_show_visitor", "no_show_resident"})


def is_overdue(request: CreditRequest, now: datetime) -> bool:
    """Overdue is a fact of the clock, computed at read time, so it can never be stale."""
    return request.status == "open" and now > request.decide_by


async def file_request(session: AsyncSession, app: AppContext, *, visit: Visit, visitor_id: str, description: str,
                       now: datetime) -> CreditRequest:
    if visit.status not in CLAIMABLE:
        raise unprocessable("a credit request is for a visit that has started or ended; cancel a future visit "
                            "instead (rules M3, M6)", slug="not-claimable")
    existing = await session.scalar(select(CreditRequest).where(CreditRequest.visit_id == visit.id,
                                                                CreditRequest.status == "open"))
    if existing is not None:
        raise conflict("there is already an open credit request for this visit", slug="already-requested")
    request = CreditRequest(visitor_id=visitor_id, visit_id=visit.id, description=description, status="open",
                            filed_at=now,
                            decide_by=now + timedelta(hours=app.settings.credit_request_decision_hours))
    session.add(request)
    await session.flush()
    return request


async def decide(session: AsyncSession, app: AppContext, request: CreditRequest, *, approve: bool, note: str | None,
                 operator_id: str, now: datetime) -> int:
    """Approving credits the visit's price once (M2, M6); a visit already credited gets no more."""
    if request.status != "open":
        raise conflict(f"this request was already {request.status}", slug="already-decided")
    request.status = "approved" if approve else "denied"
    request.decision_note = note
    request.decided_by = operator_id
    request.decided_at = now
    if not approve:
        return 0
    visit = await session.get(Visit, request.visit_id)
    assert visit is not None
    return await billing.credit_visit(session, app, visit=visit, rule="M6", now=now,
                                      description="Credit: your credit request was approved (M6)")
