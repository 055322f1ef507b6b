"""Booking use cases: availability, book with payment, review, cancel, move, check-in (B1-B8, M3, M4).

Every write path re-checks the rules inside its transaction after locking the housing unit and
the resident (PostgreSQL row locks; SQLite write transactions begin IMMEDIATE), and only then
charges, so two visitors racing for the last kiosk cannot both win or both pay (B8).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import Closure, Facility, HousingUnit, KioskNotification, Resident, Visit, VisitationWindow
from control_api.domain.cancellation import CancelledBy, cancellation_credit_rule, rejection_credit_rule
from control_api.domain.schedule import ACTIVE_STATUSES, BookedVisit, Policy, Schedule, Span, Violation, Window
from control_api.problems import ProblemError, conflict
from control_api.services import billing

VisitType = Literal["social", "privileged"]


@dataclass
class ResidentContext:
    resident: Resident
    unit: HousingUnit
    facility: Facility


async def resident_context(session: AsyncSession, resident_id: str, *, lock: bool = False) -> ResidentContext | None:
    """Load the resident with its unit and facility; with `lock`, lock unit then resident (B8)."""
    resident = await session.get(Resident, resident_id)
    if resident is None:
        return None
    unit_stmt = select(HousingUnit).where(HousingUnit.id == resident.housing_unit_id)
    if lock:
        unit_stmt = unit_stmt.with_for_update()
    unit = (await session.scalars(unit_stmt)).one()
    if lock:
        resident = (await session.scalars(select(Resident).where(Resident.id == resident_id)
                                          .with_for_update())).one()
    facility = await session.get(Facility, resident.facility_id)
    assert facility is not None
    return ResidentContext(resident=resident, unit=unit, facility=facility)


async def load_schedule(session: AsyncSession, ctx: ResidentContext, start: datetime, end: datetime,
                        ignore_visit_id: str | None = None) -> Schedule:
    """Read what the rules need around [start, end): a handful of queries, then pure checks."""
    windows = (await session.scalars(select(VisitationWindow).where(
        VisitationWindow.housing_unit_id == ctx.unit.id))).all()
    closures = (await session.execute(select(Closure.starts_at, Closure.ends_at).where(
        Closure.facility_id == ctx.facility.id,
        or_(Closure.housing_unit_id.is_(None), Closure.housing_unit_id == ctx.unit.id),
        Closure.ends_at > start, Closure.starts_at < end))).all()
    # A week either side covers the weekly limit (A7) and visits straddling the edges.
    lo, hi = start - timedelta(days=8), end + timedelta(days=8)
    unit_visits = (await session.execute(select(Visit.id, Visit.resident_id, Visit.starts_at, Visit.ends_at,
                                                Visit.status).where(
        Visit.housing_unit_id == ctx.unit.id, Visit.status.in_(ACTIVE_STATUSES),
        Visit.ends_at > lo, Visit.starts_at < hi))).all()
    resident_visits = (await session.execute(select(Visit.id, Visit.resident_id, Visit.starts_at, Visit.ends_at,
                                                    Visit.status).where(
        Visit.resident_id == ctx.resident.id, Visit.ends_at > lo, Visit.starts_at < hi))).all()
    f = ctx.facility
    policy = Policy(timezone=f.timezone, booking_horizon_days=f.booking_horizon_days,
                    min_lead_minutes=f.min_lead_minutes, weekly_visit_limit=f.weekly_visit_limit,
                    kiosk_count=ctx.unit.kiosk_count)
    return Schedule(policy=policy,
                    windows=[Window(w.weekday, w.start_minute, w.end_minute) for w in windows],
                    closures=[Span(a, b) for a, b in closures],
                    unit_visits=[BookedVisit(*row) for row in unit_visits],
                    resident_visits=[BookedVisit(*row) for row in resident_visits],
                    ignore_visit_id=ignore_visit_id)


async def available_slots(session: AsyncSession, ctx: ResidentContext, first: date, last: date,
                          length_minutes: int, now: datetime) -> list[Span]:
    zone_margin = timedelta(days=1)
    start = datetime.combine(first, time(0), tzinfo=UTC) - zone_margin
    end = datetime.combine(last, time(0), tzinfo=UTC) + 2 * zone_margin
    schedule = await load_schedule(session, ctx, start, end)
    if not ctx.resident.active:
        return []
    return schedule.available_slots(first, last, timedelta(minutes=length_minutes), now)


def raise_first(violations: list[Violation]) -> None:
    if not violations:
        return
    first = violations[0]
    status = 409 if first.slug in ("slot-taken", "resident-busy") else 422
    raise ProblemError(status, first.slug, first.message, extra={
        "rule": first.rule, "violations": [{"rule": v.rule, "slug": v.slug, "detail": v.message} for v in violations]})


async def check_rules(session: AsyncSession, ctx: ResidentContext, span: Span, now: datetime,
                      ignore_visit_id: str | None = None) -> list[Violation]:
    if not ctx.resident.active:
        return [Violation("B3", "resident-unavailable", "the resident is not available for visits")]
    schedule = await load_schedule(session, ctx, span.start, span.end, ignore_visit_id=ignore_visit_id)
    return schedule.violations(span, now)


def notify_kiosk(session: AsyncSession, visit: Visit, kind: str, now: datetime, zone: str, extra: str = "") -> None:
    """B7: the resident sees every booked, moved or cancelled visit on the unit's kiosk."""
    local = visit.starts_at.astimezone(ZoneInfo(zone))
    label = "Attorney visit" if visit.visit_type == "privileged" else "Visit"
    message = f"{label} {kind} for {local:%a %b %d, %H:%M} ({visit.length_minutes} min)"
    if extra:
        message += f": {extra}"
    session.add(KioskNotification(housing_unit_id=visit.housing_unit_id, resident_id=visit.resident_id,
                                  visit_id=visit.id, kind=kind, message=message, created_at=now))


async def book_visit(session: AsyncSession, app: AppContext, *, booker_id: str, ctx: ResidentContext,
                     visit_type: VisitType, starts_at: datetime, length_minutes: int, card_token: str | None,
                     use_credit: bool, idempotency_key: str, now: datetime,
                     on_rollback: list[Any]) -> tuple[Visit, billing.PaymentResult]:
    starts_at = starts_at.astimezone(UTC)
    span = Span(starts_at, starts_at + timedelta(minutes=length_minutes))
    quote = await billing.quote_for(session, ctx.facility, visit_type, length_minutes)  # A3, B6
    raise_first(await check_rules(session, ctx, span, now))
    status = "pending_review" if ctx.facility.review_mode == "manual" else "scheduled"
    visit = Visit(facility_id=ctx.facility.id, housing_unit_id=ctx.unit.id, resident_id=ctx.resident.id,
                  booker_id=booker_id, visit_type=visit_type, starts_at=span.start, ends_at=span.end,
                  length_minutes=length_minutes, status=status, billing_mode=quote.billing_mode,
                  price_cents=quote.price_cents, fees_cents=quote.fees_cents, total_cents=quote.total_cents,
                  quote=quote.as_dict(), created_at=now, updated_at=now)
    session.add(visit)
    await session.flush()
    payment = await billing.pay_for_visit(session, app, visit=visit, card_token=card_token, use_credit=use_credit,
                                          idempotency_key=idempotency_key, now=now, on_rollback=on_rollback)
    notify_kiosk(session, visit, "booked", now, ctx.facility.timezone)
    return visit, payment


async def review_visit(session: AsyncSession, app: AppContext, visit: Visit, *, approve: bool, reason: str | None,
                       now: datetime) -> int:
    if visit.status != "pending_review":
        raise conflict(f"only visits pending review can be reviewed; this one is {visit.status}",
                       slug="not-pending-review")
    visit.review_reason = reason
    visit.updated_at = now
    if approve:
        visit.status = "scheduled"
        return 0
    visit.status = "rejected"
    facility = await session.get(Facility, visit.facility_id)
    assert facility is not None
    notify_kiosk(session, visit, "cancelled", now, facility.timezone, "rejected by the facility")
    rule = rejection_credit_rule(now=now, starts_at=visit.starts_at)
    if rule is None:
        return 0
    return await billing.credit_visit(session, app, visit=visit, rule=rule, now=now,
                                      description="Credit: the facility rejected the booking (M3c)")


async def cancel_visit(session: AsyncSession, app: AppContext, visit: Visit, *, cancelled_by: CancelledBy,
                       reason: str, now: datetime) -> tuple[int, str | None]:
    if visit.status not in ("pending_review", "scheduled"):
        raise conflict(f"a {visit.status} visit cannot be cancelled", slug="not-cancellable")
    if now >= visit.starts_at:
        raise conflict("the visit has started; an officer can disconnect it instead (rules M4, S4)",
                       slug="visit-started")
    facility = await session.get(Facility, visit.facility_id)
    assert facility is not None
    visit.status = "cancelled"
    visit.cancelled_by = cancelled_by
    visit.cancel_reason = reason
    visit.updated_at = now
    notify_kiosk(session, visit, "cancelled", now, facility.timezone)
    rule = cancellation_credit_rule(cancelled_by=cancelled_by, now=now, starts_at=visit.starts_at,
                                    notice_hours=facility.cancellation_notice_hours)
    if rule is None:
        return 0, None
    who = {"visitor": "you cancelled with notice", "facility": "the facility cancelled",
           "operator": "the operator cancelled"}[cancelled_by]
    credited = await billing.credit_visit(session, app, visit=visit, rule=rule, now=now,
                                          description=f"Credit: {who} ({rule})")
    return credited, rule


async def move_visit(session: AsyncSession, visit: Visit, *, starts_at: datetime, now: datetime) -> None:
    if visit.status not in ("pending_review", "scheduled"):
        raise conflict(f"a {visit.status} visit cannot be moved", slug="not-movable")
    if now >= visit.starts_at:
        raise conflict("the visit has started and can no longer be moved", slug="visit-started")
    ctx = await resident_context(session, visit.resident_id, lock=True)
    assert ctx is not None
    starts_at = starts_at.astimezone(UTC)
    span = Span(starts_at, starts_at + timedelta(minutes=visit.length_minutes))
    raise_first(await check_rules(session, ctx, span, now, ignore_visit_id=visit.id))
    old = visit.starts_at
    visit.starts_at, visit.ends_at, visit.updated_at = span.start, span.end, now
    visit.housing_unit_id = ctx.unit.id
    was = old.astimezone(ZoneInfo(ctx.facility.timezone))
    notify_kiosk(session, visit, "moved", now, ctx.facility.timezone, f"was {was:%a %b %d, %H:%M}")


def check_in(visit: Visit, *, now: datetime, lobby_minutes: int) -> None:
    """S6: the resident checks in at the kiosk from the lobby opening until the end."""
    if visit.status not in ("scheduled", "in_progress"):
        raise conflict(f"a {visit.status} visit cannot be checked in", slug="not-checkable")
    opens = visit.starts_at - timedelta(minutes=lobby_minutes)
    if now < opens:
        raise conflict(f"check-in opens at {opens.isoformat()}", slug="check-in-not-open")
    if now >= visit.ends_at:
        raise conflict("the visit has ended", slug="visit-ended")
    if visit.resident_checked_in_at is None:
        visit.resident_checked_in_at = now
        visit.updated_at = now
