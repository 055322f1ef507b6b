"""Credit requests (rule M6): filed by a visitor, decided by the operator within the deadline.

`overdue` is computed at read time from the clock (open and past `decide_by`), not by a sweep:
it can never be stale and needs no stored flag.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import CreditRequest, Visit
from control_api.domain.errors import Conflict, NotFound, RuleViolation
from control_api.services import billing

# Visits that have started or ended. A `scheduled` visit qualifies once its start has passed.
CLAIMABLE = frozenset({"in_progress", "completed", "disconnected", "failed", "no_show_visitor", "no_show_resident"})


def is_overdue(request: CreditRequest, now: datetime) -> bool:
    """Overdue is a fact of the clock, computed at read time, so it can never be stale."""
    return request.status == "open" and now > request.decide_by


def is_claimable(visit: Visit, now: datetime) -> bool:
    return visit.status in CLAIMABLE or (visit.status == "scheduled" and now >= visit.starts_at)


async def file_request(session: AsyncSession, app: AppContext, *, visit_id: str, visitor_id: str, description: str,
                       now: datetime) -> CreditRequest:
    """File a request for the visitor's own visit. The visit row is locked, so two concurrent
    filings cannot both open a request (one open request per visit)."""
    visit = (await session.scalars(select(Visit).where(Visit.id == visit_id).with_for_update())).one_or_none()
    if visit is None or visit.booker_id != visitor_id:
        raise NotFound.of("visit")
    if not is_claimable(visit, now):
        raise RuleViolation("a credit request is for a visit that has started or ended; cancel a future visit "
                            "instead (rules M3, M6)", slug="not-claimable")
    existing = await session.scalar(select(CreditRequest.id).where(CreditRequest.visit_id == visit.id,
                                                                   CreditRequest.status == "open"))
    if existing is not None:
        raise Conflict("there is already an open credit request for this visit", slug="already-requested")
    request = CreditRequest(visitor_id=visitor_id, visit_id=visit.id, description=description, status="open",
                            filed_at=now,
                            decide_by=now + timedelta(hours=app.settings.credit_request_decision_hours))
    session.add(request)
    await session.flush()
    return request


async def open_on_behalf(session: AsyncSession, app: AppContext, *, visit: Visit, description: str,
                         now: datetime) -> CreditRequest | None:
    """S4, M6: an officer's `technical` disconnect is a fault on the facility's side: a credit
    request is opened for the visitor at once (decided within the M6 deadline like any other),
    so the family does not have to discover the form. None when one is already open."""
    existing = await session.scalar(select(CreditRequest.id).where(CreditRequest.visit_id == visit.id,
                                                                   CreditRequest.status == "open"))
    if existing is not None:
        return None
    request = CreditRequest(visitor_id=visit.booker_id, visit_id=visit.id, description=description, status="open",
                            filed_at=now,
                            decide_by=now + timedelta(hours=app.settings.credit_request_decision_hours))
    session.add(request)
    await session.flush()
    return request


async def get_for_decision(session: AsyncSession, request_id: str) -> CreditRequest:
    """The request, row-locked so that two concurrent decisions are serialised."""
    request = (await session.scalars(select(CreditRequest).where(CreditRequest.id == request_id)
                                     .with_for_update())).one_or_none()
    if request is None:
        raise NotFound.of("credit request")
    return request


async def decide(session: AsyncSession, app: AppContext, request: CreditRequest, *, approve: bool, note: str | None,
                 operator_id: str, now: datetime) -> int:
    """Approving credits the visit's price once (M2, M6); a visit already credited (for example
    automatically as `failed`) gets no more. Returns the cents credited by this decision."""
    if request.status != "open":
        raise Conflict(f"this request was already {request.status}", slug="already-decided")
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
