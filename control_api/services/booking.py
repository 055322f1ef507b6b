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

from control_api.auth import Principal
from control_api.context import AppContext
from control_api.db.models import (
    Closure,
    Facility,
    HousingUnit,
    KioskNotification,
    LedgerEntry,
    LedgerTransaction,
    Resident,
    Visit,
    VisitationWindow,
)
from control_api.domain.cancellation import CancelledBy, cancellation_credit_rule, rejection_credit_rule
from control_api.domain.errors import Conflict, RuleViolation
from control_api.domain.join_window import JoinWindow, Position
from control_api.domain.moving import may_move, status_after_move
from control_api.domain.schedule import ACTIVE_STATUSES, BookedVisit, Policy, Schedule, Span, Violation, Window
from control_api.services import audit, billing
from control_api.services.sweeps import sweep

VisitType = Literal["social", "privileged"]


@dataclass
class ResidentContext:
    resident: Resident
    unit: HousingUnit
    facility: Facility


async def resident_context(session: AsyncSession, resident_id: str, *, lock: bool = False) -> ResidentContext | None:
    """Load the resident with its unit and facility (one query).

    With `lock` (every write that needs the rules to stay true until commit, B8): lock the housing
    unit row, then the resident row, always in that order, so concurrent bookings for the same
    unit queue up instead of both seeing the last kiosk free. On SQLite the write transaction
    itself already holds the database lock (BEGIN IMMEDIATE), and FOR UPDATE is a no-op.
    """
    if not lock:
        row = (await session.execute(
            select(Resident, HousingUnit, Facility)
            .join(HousingUnit, HousingUnit.id == Resident.housing_unit_id)
            .join(Facility, Facility.id == Resident.facility_id)
            .where(Resident.id == resident_id))).one_or_none()
        return None if row is None else ResidentContext(resident=row[0], unit=row[1], facility=row[2])
    for _ in range(3):  # the resident may be transferred between reading its unit and locking it
        unit_id = await session.scalar(select(Resident.housing_unit_id).where(Resident.id == resident_id))
        if unit_id is None:
            return None
        unit = (await session.scalars(select(HousingUnit).where(HousingUnit.id == unit_id).with_for_update()
                                      .execution_options(populate_existing=True))).one()
        resident = (await session.scalars(select(Resident).where(Resident.id == resident_id).with_for_update()
                                          .execution_options(populate_existing=True))).one()
        if resident.housing_unit_id == unit.id:
            facility = await session.get(Facility, resident.facility_id)
            assert facility is not None
            return ResidentContext(resident=resident, unit=unit, facility=facility)
    raise Conflict("the resident is being moved between housing units; try again", slug="resident-moving")


async def lock_visit(session: AsyncSession, visit_id: str) -> Visit | None:
    """The visit row, locked until commit: two cancellations (or a cancel and a move) of the same
    visit run one after the other, and the second sees the first's result."""
    return (await session.scalars(select(Visit).where(Visit.id == visit_id).with_for_update()
                                  .execution_options(populate_existing=True))).one_or_none()


async def load_schedule(session: AsyncSession, ctx: ResidentContext, start: datetime, end: datetime,
                        ignore_visit_id: str | None = None) -> Schedule:
    """Read what the rules need around [start, end): a handful of queries, then pure checks."""
    windows = (await session.scalars(select(VisitationWindow).where(
        VisitationWindow.housing_unit_id == ctx.unit.id))).all()
    closures = (await session.execute(select(Closure.starts_at, Closure.ends_at).where(
        Closure.facility_id == ctx.facility.id,
        or_(Closure.housing_unit_id.is_(None), Closure.housing_unit_id == ctx.unit.id),
        Closure.ends_at > start, Closure.starts_at < end))).all()
    # Kiosk use (A4) only matters where it overlaps [start, end); the weekly limit (A7) needs the
    # resident's visits of every local week touching it, so a week and a day either side.
    unit_visits = (await session.execute(select(Visit.id, Visit.resident_id, Visit.starts_at, Visit.ends_at,
                                                Visit.status).where(
        Visit.housing_unit_id == ctx.unit.id, Visit.status.in_(ACTIVE_STATUSES),
        Visit.ends_at > start, Visit.starts_at < end))).all()
    lo, hi = start - timedelta(days=8), end + timedelta(days=8)
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
    """Bookable slots for local dates first..last: four queries, then pure rules in memory."""
    zone_margin = timedelta(days=1)  # local dates reach at most 14 hours either side of UTC dates
    start = datetime.combine(first, time(0), tzinfo=UTC) - zone_margin
    end = datetime.combine(last, time(0), tzinfo=UTC) + 2 * zone_margin
    schedule = await load_schedule(session, ctx, start, end)
    if not ctx.resident.active:
        return []
    return schedule.available_slots(first, last, timedelta(minutes=length_minutes), now)


def raise_first(violations: list[Violation]) -> None:
    """Refuse with the first broken rule; every broken rule is listed in `violations`.

    Someone else holding the kiosk or the resident is a conflict (409, e.g. the loser of a race,
    B8); a time the rules never allow is unprocessable (422)."""
    if not violations:
        return
    first = violations[0]
    refusal = Conflict if first.slug in ("slot-taken", "resident-busy") else RuleViolation
    raise refusal(first.message, slug=first.slug, rule=first.rule,
                  violations=[{"rule": v.rule, "slug": v.slug, "detail": v.message} for v in violations])


async def check_rules(session: AsyncSession, ctx: ResidentContext, span: Span, now: datetime,
                      ignore_visit_id: str | None = None) -> list[Violation]:
    if not ctx.resident.active:
        return [Violation("B3", "resident-unavailable", "the resident is not available for visits")]
    schedule = await load_schedule(session, ctx, span.start, span.end, ignore_visit_id=ignore_visit_id)
    return schedule.violations(span, now)


def notify_kiosk(session: AsyncSession, visit: Visit, kind: str, now: datetime, zone: str, extra: str = "") -> None:
    """B7: the resident sees every booked, moved or cancelled visit on the unit's kiosk, in local time."""
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
    """Check every rule, create the visit, then pay (B2-B7). `ctx` must come from a locking
    `resident_context`, so nothing can change the answer between the check and the charge (B8)."""
    starts_at = starts_at.astimezone(UTC)
    span = Span(starts_at, starts_at + timedelta(minutes=length_minutes))
    quote = await billing.quote_for(session, ctx.facility, visit_type, length_minutes)  # A3, B6
    raise_first(await check_rules(session, ctx, span, now))
    status = "pending_review" if ctx.facility.review_mode == "manual" else "scheduled"  # A7
    visit = Visit(facility_id=ctx.facility.id, housing_unit_id=ctx.unit.id, resident_id=ctx.resident.id,
                  booker_id=booker_id, visit_type=visit_type, starts_at=span.start, ends_at=span.end,
                  length_minutes=length_minutes, status=status, billing_mode=quote.billing_mode,
                  price_cents=quote.price_cents, fees_cents=quote.fees_cents, total_cents=quote.total_cents,
                  quote=quote.as_dict(), created_at=now, updated_at=now)
    session.add(visit)
    await session.flush()
    payment = await billing.pay_for_visit(session, app, visit=visit, card_token=card_token, use_credit=use_credit,
                                          idempotency_key=idempotency_key, now=now, on_rollback=on_rollback)
    notify_kiosk(session, visit, "booked", now, ctx.facility.timezone,
                 "awaiting the facility's approval" if status == "pending_review" else "")
    return visit, payment


async def review_visit(session: AsyncSession, app: AppContext, visit: Visit, *, approve: bool, reason: str | None,
                       now: datetime) -> int:
    """A7: staff approve or reject a booking made under manual review; a rejection credits the
    price (M3c) and tells the resident (B7). `visit` should be locked (`lock_visit`)."""
    if visit.status != "pending_review":
        raise Conflict(f"only visits pending review can be reviewed; this one is {visit.status}",
                       slug="not-pending-review")
    if now >= visit.starts_at:
        raise Conflict("the booking was not reviewed before its start; it lapses and is credited automatically "
                       "(rule M3c)", slug="visit-started")
    facility = await session.get(Facility, visit.facility_id)
    assert facility is not None
    visit.review_reason = reason
    visit.updated_at = now
    if approve:
        visit.status = "scheduled"
        notify_kiosk(session, visit, "booked", now, facility.timezone, "approved by the facility")
        return 0
    visit.status = "rejected"
    notify_kiosk(session, visit, "cancelled", now, facility.timezone, "not approved by the facility")
    rule = rejection_credit_rule(now=now, starts_at=visit.starts_at)
    if rule is None:
        return 0
    return await billing.credit_visit(session, app, visit=visit, rule=rule, now=now,
                                      description="Credit: the facility rejected the booking (M3c)")


@sweep("lapse_unreviewed_bookings")
async def lapse_unreviewed_bookings(session: AsyncSession, now: datetime, app: AppContext) -> int:
    """A booking still awaiting review when it should start never took place through the facility's
    choice: it counts as rejected before the start, so the price comes back as credit (M3c)."""
    visits = (await session.scalars(select(Visit).where(
        Visit.status == "pending_review", Visit.starts_at <= now).with_for_update())).all()
    zones: dict[str, str] = {}
    for visit in visits:
        if visit.facility_id not in zones:
            facility = await session.get(Facility, visit.facility_id)
            assert facility is not None
            zones[visit.facility_id] = facility.timezone
        visit.status = "rejected"
        visit.review_reason = "not reviewed before the start"
        visit.updated_at = now
        notify_kiosk(session, visit, "cancelled", now, zones[visit.facility_id], "not approved in time")
        await billing.credit_visit(session, app, visit=visit, rule="M3c", now=now,
                                   description="Credit: the facility did not approve the booking before its "
                                               "start (M3c)")
    return len(visits)


async def cancel_visit(session: AsyncSession, app: AppContext, visit: Visit, *, cancelled_by: CancelledBy,
                       reason: str, now: datetime) -> tuple[int, str | None]:
    """Cancel before the start; the credit follows M3a/b/d and M4. `visit` should be locked."""
    if visit.status not in ("pending_review", "scheduled"):
        raise Conflict(f"a {visit.status} visit cannot be cancelled", slug="not-cancellable")
    if now >= visit.starts_at:
        raise Conflict("the visit has started; an officer can disconnect it instead (rules M4, S4)",
                       slug="visit-started")
    facility = await session.get(Facility, visit.facility_id)
    assert facility is not None
    visit.status = "cancelled"
    visit.cancelled_by = cancelled_by
    visit.cancel_reason = reason
    visit.updated_at = now
    notify_kiosk(session, visit, "cancelled", now, facility.timezone,
                 "by the facility" if cancelled_by == "facility" else "")
    rule = cancellation_credit_rule(cancelled_by=cancelled_by, now=now, starts_at=visit.starts_at,
                                    notice_hours=facility.cancellation_notice_hours)
    if rule is None:
        return 0, None
    who = {"visitor": "you cancelled with notice", "facility": "the facility cancelled",
           "operator": "the operator cancelled"}[cancelled_by]
    credited = await billing.credit_visit(session, app, visit=visit, rule=rule, now=now,
                                          description=f"Credit: {who} ({rule})")
    return credited, rule


async def move_visit(session: AsyncSession, visit: Visit, *, ctx: ResidentContext, starts_at: datetime,
                     now: datetime, actor: Principal, by_booker: bool) -> bool:
    """Move a visit to a new start: every rule is checked again for the new time, with the visit
    itself not competing (B2-B5); type, length and price stay and nothing is charged (B1); the
    resident is told (B7) and the move is audited with the old and new start.

    The booker may move only until the facility's cancellation notice before the current start
    (A6/M3a, domain.moving); under manual review their new time waits for approval again (A7).
    `visit` should be locked, and `ctx` come from a locking `resident_context` (B8). Returns
    False when the visit is already at `starts_at` (a retried request): nothing changes then."""
    facility = ctx.facility
    verdict = may_move(status=visit.status, starts_at=visit.starts_at, now=now, by_booker=by_booker,
                       notice_hours=facility.cancellation_notice_hours, timezone=facility.timezone)
    if not verdict.allowed:
        deadline = {"move_deadline": verdict.deadline.isoformat()} if verdict.deadline else {}
        raise Conflict(verdict.message, slug=verdict.slug, **deadline)
    starts_at = starts_at.astimezone(UTC)
    span = Span(starts_at, starts_at + timedelta(minutes=visit.length_minutes))
    if span.start == visit.starts_at and ctx.unit.id == visit.housing_unit_id:
        return False  # already there: nothing to tell the resident
    raise_first(await check_rules(session, ctx, span, now, ignore_visit_id=visit.id))
    old, old_status = visit.starts_at, visit.status
    visit.starts_at, visit.ends_at, visit.updated_at = span.start, span.end, now
    visit.housing_unit_id = ctx.unit.id
    visit.status = status_after_move(visit.status, by_booker=by_booker, review_mode=facility.review_mode)
    was = old.astimezone(ZoneInfo(facility.timezone))
    extra = f"was {was:%a %b %d, %H:%M}"
    if visit.status == "pending_review":
        extra += ", awaiting the facility's approval"
    notify_kiosk(session, visit, "moved", now, facility.timezone, extra)
    await audit.append(session, now=now, action="visit.moved", actor=actor, facility_id=visit.facility_id,
                       visit_id=visit.id, detail={"from": old.isoformat(), "to": span.start.isoformat(),
                                                  "status_before": old_status, "status": visit.status})
    return True


async def move_slots(session: AsyncSession, visit: Visit, ctx: ResidentContext, first: date, last: date,
                     now: datetime) -> list[Span]:
    """Where this visit could move, local dates first..last: the bookable starts for its length,
    with the visit itself not competing (as `move_visit` checks), its current start left out."""
    zone_margin = timedelta(days=1)
    start = datetime.combine(first, time(0), tzinfo=UTC) - zone_margin
    end = datetime.combine(last, time(0), tzinfo=UTC) + 2 * zone_margin
    if not ctx.resident.active:
        return []
    schedule = await load_schedule(session, ctx, start, end, ignore_visit_id=visit.id)
    spans = schedule.available_slots(first, last, timedelta(minutes=visit.length_minutes), now)
    return [s for s in spans if s.start != visit.starts_at]


def check_in(visit: Visit, *, now: datetime, lobby_minutes: int) -> None:
    """S6: the resident checks in at the kiosk from the lobby opening (S1) until the end."""
    if visit.status not in ("scheduled", "in_progress"):
        raise Conflict(f"a {visit.status} visit cannot be checked in", slug="not-checkable")
    window = JoinWindow.of(visit.starts_at, visit.ends_at, lobby_minutes)
    position = window.position(now)
    if position is Position.BEFORE:
        raise Conflict(f"check-in opens at {window.opens_at.isoformat()}", slug="check-in-not-open")
    if position is Position.AFTER:
        raise Conflict("the visit has ended", slug="visit-ended")
    if visit.resident_checked_in_at is None:
        visit.resident_checked_in_at = now
        visit.updated_at = now


@dataclass(frozen=True)
class PaidWith:
    credit_used_cents: int
    card_charged_cents: int


async def paid_with(session: AsyncSession, visit_ids: list[str]) -> dict[str, PaidWith]:
    """How each visit was paid at booking (credit, card), read back from its payment transaction (M9)."""
    if not visit_ids:
        return {}
    rows = (await session.execute(
        select(LedgerTransaction.visit_id, LedgerEntry.account, LedgerEntry.amount_cents)
        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
        .where(LedgerTransaction.kind == "visit_payment", LedgerTransaction.visit_id.in_(visit_ids),
               or_(LedgerEntry.account == billing.GATEWAY, LedgerEntry.account.like("liability:credit:%"))))).all()
    split: dict[str, list[int]] = {}
    for visit_id, account, amount in rows:
        if visit_id is None:
            continue
        entry = split.setdefault(visit_id, [0, 0])
        entry[0 if account != billing.GATEWAY else 1] += int(amount)
    return {v: PaidWith(credit_used_cents=c, card_charged_cents=k) for v, (c, k) in split.items()}
