"""What the visit routes share: the visit's and the quote's views, and who may see or book a
visit (services.visit_access for visibility; V1/V2 for booking)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, computed_field
from sqlalchemy import select
from typing_extensions import TypedDict

from control_api.api import ApiRequest
from control_api.auth import Role
from control_api.db.models import Resident, Visit
from control_api.domain.schedule import Span
from control_api.problems import forbidden, not_found
from control_api.services import billing, booking, visit_access
from control_api.services.access import has_approved_access, is_verified_attorney

TAGS = ("visits",)
VISITORS = {Role.VISITOR, Role.ATTORNEY}
STAFF = {Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR}
MAX_RANGE_DAYS = 31

VisitStatus = Literal["pending_review", "scheduled", "in_progress", "completed", "no_show_visitor",
                      "no_show_resident", "disconnected", "failed", "cancelled", "rejected"]


class Slot(TypedDict):
    """One bookable start (a plain dict: hundreds per answer, serialised without model objects)."""

    starts_at: datetime
    ends_at: datetime
    local_start: str
    local_end: str


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


class ChangeResult(VisitOut):
    credited_cents: int = 0
    credit_rule: str | None = None


# ------------------------------------------------------------------ who may see what


async def resident_for_booking(req: ApiRequest[Any, Any], resident_id: str, visit_type: str,
                               *, lock: bool = False) -> booking.ResidentContext:
    """V1/V2 for visitors (403 until the facility approved them), V3 for staff; 404 for an unknown resident.
    With `lock`, the resident's housing unit and the resident stay locked until commit (B8)."""
    ctx = await booking.resident_context(req.session, resident_id, lock=lock)
    if ctx is None:
        raise not_found("resident")
    if req.principal.role in VISITORS:
        refusal = await booking_refusal(req, ctx.facility.id, visit_type)
        if refusal is not None:
            raise forbidden(refusal)
    else:
        req.require_facility(ctx.facility.id)
    return ctx


async def booking_refusal(req: ApiRequest[Any, Any], facility_id: str, visit_type: str) -> str | None:
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


async def resident_name(req: ApiRequest[Any, Any], resident_id: str) -> str | None:
    return await req.session.scalar(select(Resident.full_name).where(Resident.id == resident_id))


async def visit_out(req: ApiRequest[Any, Any], visit: Visit) -> VisitOut:
    """The full view of one visit, with how it was paid."""
    paid = (await booking.paid_with(req.session, [visit.id])).get(visit.id)
    return VisitOut.of(visit, await resident_name(req, visit.resident_id), paid)


def for_staff(req: ApiRequest[Any, Any], out: VisitOut, visit: Visit) -> VisitOut:
    """Staff (and operators) also see whether the visit's recording is incomplete (R1)."""
    if req.principal.role in STAFF or req.principal.role is Role.OPERATOR:
        out.recording_problems = visit.recording_problems
    return out


def slots_of(spans: list[Span], timezone: str) -> list[Slot]:
    """Bookable starts as plain dicts with their local times (these values come from our own
    computation, not from input: no model objects, no validation)."""
    zone = ZoneInfo(timezone)
    return [Slot(starts_at=s.start, ends_at=s.end, local_start=s.start.astimezone(zone).isoformat(),
                 local_end=s.end.astimezone(zone).isoformat()) for s in spans]
