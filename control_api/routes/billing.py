"""Balances, statements (M9) and credit requests (M6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, model_validator
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import CreditLot, CreditRequest, User
from control_api.problems import not_found
from control_api.routes.common import Id, Reason, Strict, get_or_404
from control_api.services import billing, credit_requests

routes = ApiRoutes()
TAGS = ("billing",)
VISITORS = {Role.VISITOR, Role.ATTORNEY}


class LotOut(BaseModel):
    amount_cents: int
    remaining_cents: int
    issued_at: datetime
    expires_at: datetime
    rule: str
    visit_id: str | None


class BalanceOut(BaseModel):
    available_cents: int
    lots: list[LotOut]


@routes.get("/v1/me/balance", summary="My credit balance", roles=VISITORS, tags=TAGS, response=BalanceOut)
async def my_balance(req: ApiRequest[Any, Any]) -> BalanceOut:
    """Only unexpired credit is available (M5), even before the expiry sweep has run."""
    lots = (await req.session.scalars(select(CreditLot).where(
        CreditLot.visitor_id == req.principal.id, CreditLot.remaining_cents > 0, CreditLot.expires_at > req.now)
        .order_by(CreditLot.expires_at))).all()
    return BalanceOut(available_cents=sum(lot.remaining_cents for lot in lots),
                      lots=[LotOut(amount_cents=lot.amount_cents, remaining_cents=lot.remaining_cents,
                                   issued_at=lot.issued_at, expires_at=lot.expires_at, rule=lot.rule,
                                   visit_id=lot.visit_id) for lot in lots])


class StatementLineOut(BaseModel):
    at: datetime
    kind: str
    rule: str
    description: str
    visit_id: str | None
    amount_cents: int
    card_cents: int
    credit_cents: int


async def _statement(req: ApiRequest[Any, Any], visitor_id: str) -> list[StatementLineOut]:
    return [StatementLineOut(**line.__dict__) for line in await billing.statement(req.session, visitor_id)]


@routes.get("/v1/me/statement", summary="My statement", roles=VISITORS, tags=TAGS, response=list[StatementLineOut])
async def my_statement(req: ApiRequest[Any, Any]) -> list[StatementLineOut]:
    """M9: every charge, credit, expiry and per-minute return, with its visit and rule."""
    return await _statement(req, req.principal.id)


@routes.get("/v1/visitors/{visitor_id}/statement", summary="A visitor's statement", roles={Role.OPERATOR},
            tags=TAGS, response=list[StatementLineOut])
async def visitor_statement(req: ApiRequest[Any, Any]) -> list[StatementLineOut]:
    user = await get_or_404(req.session, User, req.path("visitor_id"), "visitor")
    if user.role not in ("visitor", "attorney"):
        raise not_found("visitor")
    return await _statement(req, user.id)


class CreditRequestIn(Strict):
    visit_id: Id
    description: Reason


class CreditRequestOut(BaseModel):
    id: str
    visitor_id: str
    visit_id: str
    description: str
    status: str
    filed_at: datetime
    decide_by: datetime
    overdue: bool
    decided_at: datetime | None
    decision_note: str | None
    credited_cents: int | None = None

    @classmethod
    def of(cls, r: CreditRequest, now: datetime, credited: int | None = None) -> CreditRequestOut:
        return cls(id=r.id, visitor_id=r.visitor_id, visit_id=r.visit_id, description=r.description, status=r.status,
                   filed_at=r.filed_at, decide_by=r.decide_by, overdue=credit_requests.is_overdue(r, now),
                   decided_at=r.decided_at, decision_note=r.decision_note, credited_cents=credited)


@routes.post("/v1/credit-requests", summary="Ask for a credit for a system problem", roles=VISITORS, tags=TAGS,
             body=CreditRequestIn, response=CreditRequestOut, status=201, errors=(409,))
async def file_credit_request(req: ApiRequest[CreditRequestIn, Any]) -> CreditRequestOut:
    """M6: for the visitor's own visit once its start has passed (or it ended); one open request
    per visit; the operator must decide by `decide_by` (filed + credit_request_decision_hours)."""
    request = await credit_requests.file_request(req.session, req.ctx, visit_id=req.body.visit_id,
                                                 visitor_id=req.principal.id, description=req.body.description,
                                                 now=req.now)
    return CreditRequestOut.of(request, req.now)


class CreditRequestQuery(BaseModel):
    status: Literal["open", "approved", "denied"] | None = None
    overdue: bool | None = None


@routes.get("/v1/credit-requests", summary="List credit requests", roles={*VISITORS, Role.OPERATOR}, tags=TAGS,
            query=CreditRequestQuery, response=list[CreditRequestOut])
async def list_credit_requests(req: ApiRequest[Any, CreditRequestQuery]) -> list[CreditRequestOut]:
    """Visitors see their own; the operator sees all, and `overdue=true` lists those past the deadline (M6)."""
    stmt = select(CreditRequest)
    if req.principal.role in VISITORS:
        stmt = stmt.where(CreditRequest.visitor_id == req.principal.id)
    if req.query.status:
        stmt = stmt.where(CreditRequest.status == req.query.status)
    if req.query.overdue is True:
        stmt = stmt.where(CreditRequest.status == "open", CreditRequest.decide_by < req.now)
    elif req.query.overdue is False:
        stmt = stmt.where((CreditRequest.status != "open") | (CreditRequest.decide_by >= req.now))
    rows = await req.session.scalars(stmt.order_by(CreditRequest.decide_by))
    return [CreditRequestOut.of(r, req.now) for r in rows.all()]


class Decision(Strict):
    decision: Literal["approve", "deny"]
    note: Reason | None = None

    @model_validator(mode="after")
    def _note(self) -> Decision:
        if self.decision == "deny" and not self.note:
            raise ValueError("a denial must say why")
        return self


@routes.post("/v1/credit-requests/{request_id}/decision", summary="Decide a credit request", roles={Role.OPERATOR},
             tags=TAGS, body=Decision, response=CreditRequestOut, idempotent=True, errors=(409,))
async def decide_credit_request(req: ApiRequest[Decision, Any]) -> CreditRequestOut:
    """Approve issues the visit's price as credit with rule M6 (at most once per visit, whatever
    else credited it); deny needs a note; a decided request cannot be decided again (409)."""
    request = await credit_requests.get_for_decision(req.session, req.path("request_id"))
    credited = await credit_requests.decide(req.session, req.ctx, request, approve=req.body.decision == "approve",
                                            note=req.body.note, operator_id=req.principal.id, now=req.now)
    return CreditRequestOut.of(request, req.now, credited)
