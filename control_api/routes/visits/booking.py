"""Availability, quotes and booking with payment (rules B1-B8, A3, M1, M5)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.domain.schedule import Span
from control_api.problems import unprocessable
from control_api.routes.common import Day, Id, Instant, Strict
from control_api.routes.visits.views import (
    MAX_RANGE_DAYS,
    STAFF,
    TAGS,
    VISITORS,
    QuoteOut,
    Slot,
    VisitOut,
    resident_for_booking,
    slots_of,
)
from control_api.services import billing, booking

routes = ApiRoutes()
# A card number (PAN) is 13 to 19 digits, often grouped by spaces or dashes (M1: never accepted).
_CARD_NUMBER = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
CardToken = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


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


# ------------------------------------------------------------------ availability and quotes


@routes.get("/v1/residents/{resident_id}/availability", summary="List bookable slots for a resident",
            roles={*VISITORS, *STAFF, Role.OPERATOR}, tags=TAGS, query=AvailabilityQuery, response=Availability)
async def availability(req: ApiRequest[Any, AvailabilityQuery]) -> Availability:
    q = req.query
    ctx = await resident_for_booking(req, req.path("resident_id"), q.visit_type)
    await billing.quote_for(req.session, ctx.facility, q.visit_type, q.length_minutes)  # only offered lengths (A3)
    spans = await booking.available_slots(req.session, ctx, q.from_, q.to, q.length_minutes, req.now)
    slots = slots_of(spans, ctx.facility.timezone)
    # model_construct: these values come from our own computation, not from input.
    return Availability.model_construct(resident_id=ctx.resident.id, timezone=ctx.facility.timezone,
                                        length_minutes=q.length_minutes, visit_type=q.visit_type, slots=slots)


@routes.post("/v1/quotes", summary="Quote a visit before paying", roles={*VISITORS, Role.OPERATOR}, tags=TAGS,
             body=QuoteRequest, response=QuoteResponse)
async def quote(req: ApiRequest[QuoteRequest, Any]) -> QuoteResponse:
    """B6: the price with every fee and tax itemised, and whether the slot can be booked now."""
    b = req.body
    ctx = await resident_for_booking(req, b.resident_id, b.visit_type)
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
    ctx = await resident_for_booking(req, b.resident_id, b.visit_type, lock=True)
    visit, payment = await booking.book_visit(
        req.session, req.ctx, booker_id=req.principal.id, ctx=ctx, visit_type=b.visit_type, starts_at=b.starts_at,
        length_minutes=b.length_minutes, card_token=b.payment.card_token, use_credit=b.payment.use_credit,
        idempotency_key=key, now=req.now, on_rollback=req.on_rollback)
    return VisitOut.of(visit, ctx.resident.full_name, payment)
