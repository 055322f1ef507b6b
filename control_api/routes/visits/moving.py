"""Changing a booked visit: moving it to another time (A6, B2-B5, M3a) and its preview; its
type never changes (B1)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, model_validator

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.domain.moving import may_move, status_after_move
from control_api.problems import unprocessable
from control_api.routes.common import Day, Instant, Strict
from control_api.routes.visits.views import (
    MAX_RANGE_DAYS,
    STAFF,
    TAGS,
    VISITORS,
    Slot,
    VisitOut,
    booking_refusal,
    resident_for_booking,
    slots_of,
    visible_visit,
    visit_out,
)
from control_api.services import audit, booking

routes = ApiRoutes()


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
    ctx = await resident_for_booking(req, visit.resident_id, visit.visit_type, lock=True)
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
        refusal = await booking_refusal(req, f.id, visit.visit_type)
        if refusal is not None:
            reason, detail = "no_access", refusal
    slots: list[Slot] = []
    if reason == "allowed":
        slots = slots_of(await booking.move_slots(req.session, visit, ctx, first, last, req.now), f.timezone)
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
