"""Ending a booking before it happens: staff review (A7, M3c), cancellation and its preview
(M3, M4)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Facility
from control_api.domain.cancellation import CancelledBy, cancellation_credit_rule
from control_api.routes.common import Reason, Strict
from control_api.routes.visits.views import TAGS, VISITORS, ChangeResult, visible_visit, visit_out
from control_api.services import booking

routes = ApiRoutes()


class ReviewRequest(Strict):
    decision: Literal["approve", "reject"]
    reason: Reason | None = None

    @model_validator(mode="after")
    def _reason(self) -> ReviewRequest:
        if self.decision == "reject" and not self.reason:
            raise ValueError("a rejection must give a reason")
        return self


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
