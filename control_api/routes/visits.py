"""Availability, quotes, booking with payment, review, cancellation, moving, kiosk notices and
check-in (rules B1-B8, M3, M4, S6)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, StringConstraints, computed_field, model_validator
from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from typing_extensions import TypedDict

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Facility, KioskNotification, Resident, Visit
from control_api.domain.cancellation import CancelledBy, cancellation_credit_rule
from control_api.domain.moving import may_move, status_after_move
from control_api.domain.schedule import Span
from control_api.problems import forbidden, not_found, unprocessable
from control_api.routes.common import Day, Id, Instant, InstantOrDay, Reason, Strict, get_or_404
from control_api.services import audit, billing, booking, visit_access
from control_api.services.access import has_approved_access, is_verified_attorney

routes = ApiRoutes()
TAGS = ("visits",)
VISITORS = {Role.VISITOR, Role.ATTORNEY}
STAFF = {Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR}
MAX_RANGE_DAYS = 31
# A card number (PAN) is 13 to 19 digits, often grouped by spaces or dashes (M1: never accepted).
_CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
VisitStatus = Literal["pending_review", "scheduled", "in_progress", "completed", "no_show_visitor",
                      "no_show_resident", "disconnected", "failed", "cancelled", "rejected"]
CardToken = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Slot(TypedDict):
    """One bookable start (a plain dict: hundreds per answer, serialised without model objects)."""

    starts_at: datetime
    ends_at: datetime
    local_start: str
    local_end: str


class AvailabilityQuery(BaseModel):
    from_: Day = Field(alias="from", description="first local date")
    to: Day = Field(description="last local date (inclusive)")
    length_minutes: int = Field(ge=5, le=240)
    visit_type: Literal["social", "privileged"] = "social"

    @model_validator(mode="after")
    def _range(self) -> AvailabilityQuery:
        if self.to < self.from_:
            raise ValueError("'to' must not be before 'from'")
        if (self.to - self.from_).days >= MAX_RANGE_DAYS:
            raise ValueError(f"at most {MAX_RANGE_DAYS} days per request")
        return self


class Availability(BaseModel):
    resident_id: str
    timezone: str
    length_minutes: int
    visit_type: str
    slots: list[Slot]


class QuoteLineOut(BaseModel):
    kind: str
    name: str
    amount_cents: int


PRIVACY_NOTICES = {
    "social": "This visit is recorded, and facility officers may watch and listen live without notice.",
    "privileged": "Privileged attorney visit: never recorded and never monitored (rule P1).",
}


class QuoteOut(BaseModel):
    billing_mode: str
    visit_type: str
    length_minutes: int
    per_minute_cents: int | None
    lines: list[QuoteLineOut]
    price_cents: int
    fees_cents: int
    total_cents: int
    currency: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def privacy_notice(self) -> str:
        """Told at booking (quote and visit): whether the visit is recorded and may be monitored."""
        return PRIVACY_NOTICES.get(self.visit_type, PRIVACY_NOTICES["social"])


class QuoteRequest(Strict):
    resident_id: Id
    starts_at: Instant
    length_minutes: int = Field(ge=5, le=240)
    visit_type: Literal["social", "privileged"] = "social"


class QuoteResponse(BaseModel):
    quote: QuoteOut
    bookable: bool
    problems: list[dict[str, str]]
    credit_available_cents: int


class Payment(Strict):
    card_token: CardToken | None = Field(default=None, description="a payment-processor token, never card data "
                                                                    "(anything holding a 13-19 digit number is "
                                                                    "refused, M1)")
    use_credit: bool = Field(default=True, description="spend credit first, soonest-expiring (M5)")


def looks_like_card_number(value: str | None) -> bool:
    """M1: a 13-19 digit number, with or without spaces or dashes, is card data, not a token."""
    return value is not None and _CARD_NUMBER.search(value) is not None


class BookingRequest(QuoteRequest):
    payment: Payment = Field(default_factory=Payment)


class VisitOut(BaseModel):
    id: str
    facility_id: str
    housing_unit_id: str
    resident_id: str
    resident_name: str | None = None
    booker_id: str
    visit_type: str
    starts_at: datetime
    ends_at: datetime
    length_minutes: int
    status: str
    billing_mode: str
    quote: QuoteOut
    price_cents: int
    fees_cents: int
    total_cents: int
    credit_used_cents: int | None = None
    card_charged_cents: int | None = None
    cancelled_by: str | None
    cancel_reason: str | None
    review_reason: str | None
    disconnect_reason: str | None
    ended_reason: str | None
    resident_checked_in_at: datetime | None
    connected_seconds: int | None
    interrupted_at: datetime | None = Field(
        default=None, description="when the media connection was lost on our side (S5: joinable until the end; "
                                  "failed and credited if it does not resume, S6/M6)")
    created_at: datetime
    recording_problems: list[dict[str, Any]] | None = Field(
        default=None, description="staff only: why this visit's recording is incomplete (write error, refused for "
                                  "lack of disk space, a segment recovered after a crash); rule R1")

    @classmethod
    def of(cls, v: Visit, resident_name: str | None = None,
           payment: billing.PaymentResult | booking.PaidWith | None = None) -> VisitOut:
        return cls(id=v.id, facility_id=v.facility_id, housing_unit_id=v.housing_unit_id, resident_id=v.resident_id,
                   resident_name=resident_name, booker_id=v.booker_id, visit_type=v.visit_type,
                   starts_at=v.starts_at, ends_at=v.ends_at, length_minutes=v.length_minutes, status=v.status,
                   billing_mode=v.billing_mode, quote=QuoteOut.model_validate(v.quote), price_cents=v.price_cents,
                   fees_cents=v.fees_cents, total_cents=v.total_cents,
                   credit_used_cents=payment.credit_used_cents if payment else None,
                   card_charged_cents=payment.card_charged_cents if payment else None,
                   cancelled_by=v.cancelled_by, cancel_reason=v.cancel_reason, review_reason=v.review_reason,
                   disconnect_reason=v.disconnect_reason, ended_reason=v.ended_reason,
                   resident_checked_in_at=v.resident_checked_in_at, connected_seconds=v.connected_seconds,
                   interrupted_at=v.interrupted_at, created_at=v.created_at)


# ------------------------------------------------------------------ who may see what


async def _resident_for_booking(req: ApiRequest[Any, Any], resident_id: str, visit_type: str,
                                *, lock: bool = False) -> booking.ResidentContext:
    """V1/V2 for visitors (403 until the facility approved them), V3 for staff; 404 for an unknown resident.
    With `lock`, the resident's housing unit and the resident stay locked until commit (B8)."""
    ctx = await booking.resident_context(req.session, resident_id, lock=lock)
    if ctx is None:
        raise not_found("resident")
    if req.principal.role in VISITORS:
        refusal = await _booking_refusal(req, ctx.facility.id, visit_type)
        if refusal is not None:
            raise forbidden(refusal)
    else:
        req.require_facility(ctx.facility.id)
    return ctx


async def _booking_refusal(req: ApiRequest[Any, Any], facility_id: str, visit_type: str) -> str | None:
    """Why this visitor may not book (or move) a visit of this type at the facility now, or None:
    V1 access approved, V2 an attorney verified there for privileged visits."""
    p = req.principal
    if not await has_approved_access(req.session, p.id, facility_id):
        return "the facility has not approved your access request (rule V1)"
    if visit_type == "privileged" and not (p.role is Role.ATTORNEY and await is_verified_attorney(
            req.session, p.id, facility_id)):
        return "only attorneys verified by this facility can book privileged visits (rule V2)"
    return None


async def visible_visit(req: ApiRequest[Any, Any], visit_id: str, *, lock: bool = False) -> Visit:
    """The visit if the caller may see it (services.visit_access); with `lock`, locked until commit."""
    return await visit_access.visible_visit(req.session, req.principal, visit_id, lock=lock)


async def _resident_name(req: ApiRequest[Any, Any], resident_id: str) -> str | None:
    return await req.session.scalar(select(Resident.full_name).where(Resident.id == resident_id))


async def visit_out(req: ApiRequest[Any, Any], visit: Visit) -> VisitOut:
    """The full view of one visit, with how it was paid."""
    paid = (await booking.paid_with(req.session, [visit.id])).get(visit.id)
    return VisitOut.of(visit, await _resident_name(req, visit.resident_id), paid)


# ------------------------------------------------------------------ availability and quotes


@routes.get("/v1/residents/{resident_id}/availability", summary="List bookable slots for a resident",
            roles={*VISITORS, *STAFF, Role.OPERATOR}, tags=TAGS, query=AvailabilityQuery, response=Availability)
async def availability(req: ApiRequest[Any, AvailabilityQuery]) -> Availability:
    q = req.query
    ctx = await _resident_for_booking(req, req.path("resident_id"), q.visit_type)
    await billing.quote_for(req.session, ctx.facility, q.visit_type, q.length_minutes)  # only offered lengths (A3)
    spans = await booking.available_slots(req.session, ctx, q.from_, q.to, q.length_minutes, req.now)
    zone = ZoneInfo(ctx.facility.timezone)
    # model_construct and plain dicts: these values come from our own computation, not from input.
    slots = [Slot(starts_at=s.start, ends_at=s.end, local_start=s.start.astimezone(zone).isoformat(),
                  local_end=s.end.astimezone(zone).isoformat()) for s in spans]
    return Availability.model_construct(resident_id=ctx.resident.id, timezone=ctx.facility.timezone,
                                        length_minutes=q.length_minutes, visit_type=q.visit_type, slots=slots)


@routes.post("/v1/quotes", summary="Quote a visit before paying", roles={*VISITORS, Role.OPERATOR}, tags=TAGS,
             body=QuoteRequest, response=QuoteResponse)
async def quote(req: ApiRequest[QuoteRequest, Any]) -> QuoteResponse:
    """B6: the price with every fee and tax itemised, and whether the slot can be booked now."""
    b = req.body
    ctx = await _resident_for_booking(req, b.resident_id, b.visit_type)
    q = await billing.quote_for(req.session, ctx.facility, b.visit_type, b.length_minutes)
    span = Span(b.starts_at, b.starts_at + timedelta(minutes=b.length_minutes))
    problems = await booking.check_rules(req.session, ctx, span, req.now)
    credit = 0
    if req.principal.role in VISITORS:
        credit = await billing.balance_cents(req.session, req.principal.id, req.now)
    return QuoteResponse(quote=QuoteOut.model_validate(q.as_dict()), bookable=not problems,
                         problems=[{"rule": p.rule, "slug": p.slug, "detail": p.message} for p in problems],
                         credit_available_cents=credit)


# ------------------------------------------------------------------ booking (B1-B8)


@routes.post("/v1/visits", summary="Book and pay for a visit", roles=VISITORS, tags=TAGS, body=BookingRequest,
             response=VisitOut, status=201, idempotent=True, errors=(402, 403, 409))
async def book(req: ApiRequest[BookingRequest, Any]) -> VisitOut:
    """B1-B8: check access (V1, V2) and every schedule rule with the housing unit and resident
    locked, create the visit, pay (credit first, then card), and tell the resident's kiosk."""
    b = req.body
    if looks_like_card_number(b.payment.card_token):
        raise unprocessable("tokens only (M1): send the payment processor's token, never a card number",
                            slug="card-data-refused")
    key = req.request.headers["Idempotency-Key"]
    ctx = await _resident_for_booking(req, b.resident_id, b.visit_type, lock=True)
    visit, payment = await booking.book_visit(
        req.session, req.ctx, booker_id=req.principal.id, ctx=ctx, visit_type=b.visit_type, starts_at=b.starts_at,
        length_minutes=b.length_minutes, card_token=b.payment.card_token, use_credit=b.payment.use_credit,
        idempotency_key=key, now=req.now, on_rollback=req.on_rollback)
    return VisitOut.of(visit, ctx.resident.full_name, payment)


class VisitQuery(BaseModel):
    status: VisitStatus | None = None
    resident_id: Id | None = None
    facility_id: Id | None = None
    from_: InstantOrDay | None = Field(default=None, alias="from", description=(
        "visits starting at or after this instant, or on or after this local date (facility time, A1)"))
    to: InstantOrDay | None = Field(default=None, description=(
        "visits starting before this instant, or on or before this local date (facility time, A1)"))
    limit: int = Field(default=100, ge=1, le=500)


def _local_midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


async def _starts_filter(req: ApiRequest[Any, VisitQuery], facility_id: str | None) -> ColumnElement[bool] | None:
    """`from`/`to` as a condition on starts_at. Dates are local to each visit's facility, so with
    several facilities in view there is one pair of bounds per time zone."""
    q = req.query
    if q.from_ is None and q.to is None:
        return None

    def bounds(zone: str | None) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if isinstance(q.from_, datetime):
            out.append(Visit.starts_at >= q.from_)
        elif q.from_ is not None and zone is not None:
            out.append(Visit.starts_at >= _local_midnight(q.from_, zone))
        if isinstance(q.to, datetime):
            out.append(Visit.starts_at < q.to)
        elif q.to is not None and zone is not None:
            out.append(Visit.starts_at < _local_midnight(q.to + timedelta(days=1), zone))
        return out

    if all(v is None or isinstance(v, datetime) for v in (q.from_, q.to)):
        return and_(*bounds(None))
    stmt = select(Facility.id, Facility.timezone)
    if facility_id is not None:
        stmt = stmt.where(Facility.id == facility_id)
    by_zone: dict[str, list[str]] = {}
    for fid, zone in (await req.session.execute(stmt)).all():
        by_zone.setdefault(zone, []).append(fid)
    if not by_zone:
        return Visit.id.is_(None)
    return or_(*[and_(Visit.facility_id.in_(ids), *bounds(zone)) for zone, ids in by_zone.items()])


@routes.get("/v1/visits", summary="List visits", roles={*VISITORS, *STAFF, Role.OPERATOR, Role.KIOSK}, tags=TAGS,
            query=VisitQuery, response=list[VisitOut])
async def list_visits(req: ApiRequest[Any, VisitQuery]) -> list[VisitOut]:
    """Visitors see their own, staff their facility's (V3), a kiosk its housing unit's upcoming
    ones, operators everything; filters: status, resident_id, facility_id, from, to."""
    p, q = req.principal, req.query
    stmt = select(Visit, Resident.full_name).join(Resident, Resident.id == Visit.resident_id)
    visible = visit_access.visible_to(p)
    if visible is not None:
        stmt = stmt.where(visible)
    scope = q.facility_id
    if p.role is Role.KIOSK:  # only the upcoming ones
        stmt = stmt.where(Visit.ends_at > req.now, Visit.status.in_(("scheduled", "in_progress")))
        scope = p.facility_id
    elif p.role not in VISITORS and p.role is not Role.OPERATOR:
        if q.facility_id and q.facility_id != p.facility_id:
            req.require_facility(q.facility_id)
        scope = p.facility_id
    if q.facility_id:
        stmt = stmt.where(Visit.facility_id == q.facility_id)
    if q.status:
        stmt = stmt.where(Visit.status == q.status)
    if q.resident_id:
        stmt = stmt.where(Visit.resident_id == q.resident_id)
    starts = await _starts_filter(req, scope)
    if starts is not None:
        stmt = stmt.where(starts)
    rows = (await req.session.execute(stmt.order_by(Visit.starts_at, Visit.id).limit(q.limit))).all()
    paid = await booking.paid_with(req.session, [v.id for v, _ in rows])
    return [_for_staff(req, VisitOut.of(v, name, paid.get(v.id)), v) for v, name in rows]


def _for_staff(req: ApiRequest[Any, Any], out: VisitOut, visit: Visit) -> VisitOut:
    """Staff (and operators) also see whether the visit's recording is incomplete (R1)."""
    if req.principal.role in STAFF or req.principal.role is Role.OPERATOR:
        out.recording_problems = visit.recording_problems
    return out


@routes.get("/v1/visits/{visit_id}", summary="Read a visit", roles={*VISITORS, *STAFF, Role.OPERATOR, Role.KIOSK},
            tags=TAGS, response=VisitOut)
async def read_visit(req: ApiRequest[Any, Any]) -> VisitOut:
    visit = await visible_visit(req, req.path("visit_id"))
    return _for_staff(req, await visit_out(req, visit), visit)


class ReviewRequest(Strict):
    decision: Literal["approve", "reject"]
    reason: Reason | None = None

    @model_validator(mode="after")
    def _reason(self) -> ReviewRequest:
        if self.decision == "reject" and not self.reason:
            raise ValueError("a rejection must give a reason")
        return self


class ChangeResult(VisitOut):
    credited_cents: int = 0
    credit_rule: str | None = None


@routes.post("/v1/visits/{visit_id}/review", summary="Approve or reject a booking", roles={Role.ADMIN}, tags=TAGS,
             body=ReviewRequest, response=ChangeResult, idempotent=True, errors=(409,))
async def review(req: ApiRequest[ReviewRequest, Any]) -> ChangeResult:
    """A7: approve or reject a booking awaiting review, before it starts; a rejection credits M3c."""
    visit = await visible_visit(req, req.path("visit_id"), lock=True)
    credited = await booking.review_visit(req.session, req.ctx, visit, approve=req.body.decision == "approve",
                                          reason=req.body.reason, now=req.now)
    return ChangeResult(**(await visit_out(req, visit)).model_dump(), credited_cents=credited,
                        credit_rule="M3c" if credited else None)


class CancelRequest(Strict):
    reason: Reason


@routes.post("/v1/visits/{visit_id}/cancel", summary="Cancel a visit",
             roles={*VISITORS, Role.ADMIN, Role.OFFICER, Role.OPERATOR}, tags=TAGS, body=CancelRequest,
             response=ChangeResult, idempotent=True, errors=(409,))
async def cancel(req: ApiRequest[CancelRequest, Any]) -> ChangeResult:
    """Credits follow M3/M4: with notice for visitors, always for facility and operator before the start."""
    visit = await visible_visit(req, req.path("visit_id"), lock=True)
    role = req.principal.role
    by: CancelledBy = "visitor" if role in VISITORS else "operator" if role is Role.OPERATOR else "facility"
    credited, rule = await booking.cancel_visit(req.session, req.ctx, visit, cancelled_by=by,
                                                reason=req.body.reason, now=req.now)
    return ChangeResult(**(await visit_out(req, visit)).model_dump(), credited_cents=credited, credit_rule=rule)


class CancellationPreview(BaseModel):
    """What cancelling this visit now would do, asked before confirming (M3, M4)."""

    visit_id: str
    cancellable: bool = Field(description="false once the visit has started or is no longer scheduled")
    cancelled_by: str = Field(description="who the caller would cancel as: visitor, facility or operator")
    credit_cents: int = Field(description="credit that cancelling now would issue (the price; fees never, M2/M7)")
    credit_rule: str | None = Field(description="M3a, M3b or M3d when a credit is due, else null")
    reason: Literal["notice_given", "facility_cancels", "operator_cancels", "short_notice", "started",
                    "not_cancellable"] = Field(description="why a credit is or is not due")
    detail: str
    notice_hours: int = Field(description="the facility's cancellation notice (A6)")
    credit_deadline: datetime = Field(description="a visitor cancelling before this instant gets a credit (M3a)")
    fees_cents: int = Field(description="service fees, never credited (M7)")
    as_of: datetime = Field(description="the server's time this answer holds for")


@routes.get("/v1/visits/{visit_id}/cancellation", summary="Preview cancelling a visit: is a credit due, and why",
            roles={*VISITORS, Role.ADMIN, Role.OFFICER, Role.OPERATOR}, tags=TAGS, response=CancellationPreview)
async def cancellation_preview(req: ApiRequest[Any, Any]) -> CancellationPreview:
    """M3/M4 answered before the person confirms, with the same rule the cancellation applies
    (domain.cancellation); nothing changes."""
    visit = await visible_visit(req, req.path("visit_id"))
    facility = await req.session.get(Facility, visit.facility_id)
    assert facility is not None
    role = req.principal.role
    by: CancelledBy = "visitor" if role in VISITORS else "operator" if role is Role.OPERATOR else "facility"
    notice = facility.cancellation_notice_hours
    deadline = visit.starts_at - timedelta(hours=notice)
    cancellable = visit.status in ("pending_review", "scheduled") and req.now < visit.starts_at
    rule = cancellation_credit_rule(cancelled_by=by, now=req.now, starts_at=visit.starts_at,
                                    notice_hours=notice) if cancellable else None
    reason: Any
    if not cancellable:
        reason = "not_cancellable" if visit.status not in ("pending_review", "scheduled", "in_progress") else "started"
        detail = (f"a {visit.status} visit cannot be cancelled" if reason == "not_cancellable"
                  else "the visit has started: no credit once the start has passed (rule M4)")
    elif rule is None:
        reason = "short_notice"
        detail = (f"less than the facility's {notice} hours' notice: cancelling now gives no credit "
                  "(rules A6, M3a)")
    else:
        reason = {"M3a": "notice_given", "M3b": "facility_cancels", "M3d": "operator_cancels"}[rule]
        detail = f"the visit's price comes back as credit (rule {rule}); fees are not credited (M7)"
    return CancellationPreview(
        visit_id=visit.id, cancellable=cancellable, cancelled_by=by, credit_cents=visit.price_cents if rule else 0,
        credit_rule=rule, reason=reason, detail=detail, notice_hours=notice, credit_deadline=deadline,
        fees_cents=visit.fees_cents, as_of=req.now)


class MoveRequest(Strict):
    starts_at: Instant


@routes.post("/v1/visits/{visit_id}/move", summary="Move a visit to another time",
             roles={*VISITORS, Role.ADMIN}, tags=TAGS, body=MoveRequest, response=VisitOut, idempotent=True,
             errors=(409,))
async def move(req: ApiRequest[MoveRequest, Any]) -> VisitOut:
    """The booker moves their own visit (others' visits: 404) until the facility's cancellation
    notice before the current start (A6/M3a; else 409 too-late-to-move), still approved there (V1)
    and, for a privileged visit, still a verified attorney (V2); admins move their facility's (V3).
    B2-B5 re-checked for the new time (the visit does not compete with itself); B1 type, length and
    price unchanged, nothing charged; B7 the resident is told; audited. Under manual review (A7) the
    booker's new time is `pending_review` until staff approve it."""
    visit = await visible_visit(req, req.path("visit_id"), lock=True)
    ctx = await _resident_for_booking(req, visit.resident_id, visit.visit_type, lock=True)
    await booking.move_visit(req.session, visit, ctx=ctx, starts_at=req.body.starts_at, now=req.now,
                             actor=req.principal, by_booker=req.principal.role in VISITORS)
    return await visit_out(req, visit)


class MoveOptionsQuery(BaseModel):
    from_: Day | None = Field(default=None, alias="from", description="first local date (default: today, "
                                                                       "facility time)")
    to: Day | None = Field(default=None, description="last local date, inclusive (default: six days after 'from')")

    @model_validator(mode="after")
    def _range(self) -> MoveOptionsQuery:
        if self.from_ is not None and self.to is not None:
            if self.to < self.from_:
                raise ValueError("'to' must not be before 'from'")
            if (self.to - self.from_).days >= MAX_RANGE_DAYS:
                raise ValueError(f"at most {MAX_RANGE_DAYS} days per request")
        return self


class MoveOptions(BaseModel):
    """Whether the caller may move this visit now and, if so, where to (asked before confirming)."""

    visit_id: str
    movable: bool
    reason: Literal["allowed", "not_movable", "started", "too_late", "no_access"] = Field(
        description="why it can or cannot be moved now")
    detail: str
    move_deadline: datetime | None = Field(description="the booker may move it until this instant: the facility's "
                                                       "cancellation notice before the current start (A6, M3a); "
                                                       "null for facility staff")
    notice_hours: int
    review_after_move: bool = Field(description="the new time waits for the facility's approval (A7)")
    timezone: str
    length_minutes: int
    visit_type: str
    booking_horizon_days: int
    first: date
    last: date
    slots: list[Slot] = Field(description="where the visit could move in first..last (every booking rule met, "
                                          "B2-B5); empty when it cannot be moved")
    as_of: datetime


@routes.get("/v1/visits/{visit_id}/move-options", summary="Preview moving a visit: allowed now, until when, "
                                                          "and the times it could move to",
            roles={*VISITORS, Role.ADMIN}, tags=TAGS, query=MoveOptionsQuery, response=MoveOptions)
async def move_options(req: ApiRequest[Any, MoveOptionsQuery]) -> MoveOptions:
    """The same checks as the move (domain.moving, V1/V2, B2-B5), answered before the person
    chooses; nothing changes."""
    visit = await visible_visit(req, req.path("visit_id"))
    ctx = await booking.resident_context(req.session, visit.resident_id)
    assert ctx is not None
    f = ctx.facility
    by_booker = req.principal.role in VISITORS
    if not by_booker:
        req.require_facility(f.id)
    first = req.query.from_ or req.now.astimezone(ZoneInfo(f.timezone)).date()
    last = req.query.to or first + timedelta(days=6)
    if (last - first).days >= MAX_RANGE_DAYS or last < first:
        raise unprocessable(f"'to' must be on or after 'from', at most {MAX_RANGE_DAYS} days per request",
                            slug="bad-range")
    verdict = may_move(status=visit.status, starts_at=visit.starts_at, now=req.now, by_booker=by_booker,
                       notice_hours=f.cancellation_notice_hours, timezone=f.timezone)
    reason: Any = verdict.reason
    detail = verdict.message or "the visit can be moved to any of the times listed (every booking rule, B2-B5)"
    if verdict.allowed and by_booker:
        refusal = await _booking_refusal(req, f.id, visit.visit_type)
        if refusal is not None:
            reason, detail = "no_access", refusal
    slots: list[Slot] = []
    if reason == "allowed":
        zone = ZoneInfo(f.timezone)
        spans = await booking.move_slots(req.session, visit, ctx, first, last, req.now)
        slots = [Slot(starts_at=s.start, ends_at=s.end, local_start=s.start.astimezone(zone).isoformat(),
                      local_end=s.end.astimezone(zone).isoformat()) for s in spans]
    return MoveOptions(
        visit_id=visit.id, movable=reason == "allowed", reason=reason, detail=detail, move_deadline=verdict.deadline,
        notice_hours=f.cancellation_notice_hours,
        review_after_move=status_after_move(visit.status, by_booker=by_booker,
                                            review_mode=f.review_mode) == "pending_review",
        timezone=f.timezone, length_minutes=visit.length_minutes, visit_type=visit.visit_type,
        booking_horizon_days=f.booking_horizon_days, first=first, last=last, slots=slots, as_of=req.now)


@routes.patch("/v1/visits/{visit_id}", summary="Change a visit's type (always refused)",
              roles={*VISITORS, *STAFF, Role.OPERATOR}, tags=TAGS, errors=(409,), own_transactions=True)
async def patch_visit(req: ApiRequest[Any, Any]) -> None:
    """B1: a visit's type never changes after booking; cancel and book again instead. Every
    attempt is audited (a privileged visit turned social would lose P1)."""
    visit = await visible_visit(req, req.path("visit_id"))
    async with req.ctx.sessions() as session, session.begin():
        await audit.append(session, now=req.now, action="visit.change_refused", actor=req.principal,
                           facility_id=visit.facility_id, visit_id=visit.id,
                           detail={"visit_type": visit.visit_type})
    raise unprocessable("a visit cannot be changed after booking; its type never changes (rule B1). Cancel it "
                        "and book again, or move it to another time (POST /v1/visits/{id}/move).",
                        slug="visit-immutable")


# ------------------------------------------------------------------ kiosk (B7, S6)


class NotificationOut(BaseModel):
    id: str
    visit_id: str
    resident_id: str
    resident_name: str | None
    kind: str
    message: str
    created_at: datetime
    acknowledged_at: datetime | None


@routes.get("/v1/kiosk/notifications", summary="Notices for this kiosk's residents", roles={Role.KIOSK},
            tags=("kiosk",), response=list[NotificationOut])
async def kiosk_notifications(req: ApiRequest[Any, Any]) -> list[NotificationOut]:
    rows = await req.session.execute(
        select(KioskNotification, Resident.full_name).join(Resident, Resident.id == KioskNotification.resident_id)
        .where(KioskNotification.housing_unit_id == req.principal.housing_unit_id)
        .order_by(KioskNotification.acknowledged_at.is_not(None), KioskNotification.created_at.desc()).limit(200))
    return [NotificationOut(id=n.id, visit_id=n.visit_id, resident_id=n.resident_id, resident_name=name, kind=n.kind,
                            message=n.message, created_at=n.created_at, acknowledged_at=n.acknowledged_at)
            for n, name in rows.all()]


@routes.post("/v1/kiosk/notifications/{notification_id}/ack", summary="Mark a kiosk notice as seen",
             roles={Role.KIOSK}, tags=("kiosk",), response=NotificationOut)
async def ack_notification(req: ApiRequest[Any, Any]) -> NotificationOut:
    note = await get_or_404(req.session, KioskNotification, req.path("notification_id"), "notification")
    if note.housing_unit_id != req.principal.housing_unit_id:
        raise not_found("notification")
    if note.acknowledged_at is None:
        note.acknowledged_at = req.now
    return NotificationOut(id=note.id, visit_id=note.visit_id, resident_id=note.resident_id,
                           resident_name=await _resident_name(req, note.resident_id), kind=note.kind,
                           message=note.message, created_at=note.created_at, acknowledged_at=note.acknowledged_at)


@routes.post("/v1/visits/{visit_id}/check-in", summary="Check the resident in at the kiosk", roles={Role.KIOSK},
             tags=("kiosk",), response=VisitOut, errors=(409,))
async def check_in(req: ApiRequest[Any, Any]) -> VisitOut:
    """S6: the resident checks in at a kiosk of the visit's housing unit, lobby opening to end."""
    visit = await visible_visit(req, req.path("visit_id"), lock=True)
    booking.check_in(visit, now=req.now, lobby_minutes=req.ctx.settings.lobby_minutes)
    return await visit_out(req, visit)
