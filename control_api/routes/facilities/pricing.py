"""What a facility offers and charges: session lengths and prices (A3, M8), fees and taxes (M7)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import FeeItem, SessionOption
from control_api.routes.common import Strict, facility_for
from control_api.routes.facilities.scope import ADMINS, EVERYONE, TAGS, locked_facility
from control_api.services import facility_configuration as config

routes = ApiRoutes()


# ------------------------------------------------------------------ session lengths and prices (A3, M8)


class SessionOptionIn(Strict):
    visit_type: Literal["social", "privileged"]
    length_minutes: int = Field(ge=5, le=240)
    price_cents: int = Field(default=0, ge=0, le=1_000_000, description="per_visit billing")
    per_minute_cents: int = Field(default=0, ge=0, le=10_000, description="per_minute billing (M8 cap applies)")


class SessionOptionsIn(Strict):
    options: list[SessionOptionIn] = Field(max_length=50)


class SessionOptionOut(BaseModel):
    visit_type: str
    length_minutes: int
    price_cents: int
    per_minute_cents: int


@routes.put("/v1/facilities/{facility_id}/session-options",
            summary="Replace the session lengths and prices offered", roles=ADMINS, tags=TAGS,
            body=SessionOptionsIn, response=list[SessionOptionOut])
async def replace_session_options(req: ApiRequest[SessionOptionsIn, Any]) -> list[SessionOptionOut]:
    """Replaces the whole list; per-minute prices are checked against the cap (M8) under the facility lock."""
    facility = await locked_facility(req)
    await config.replace_session_options(req.session, facility, [o.model_dump() for o in req.body.options])
    return await _options(req, facility.id)


async def _options(req: ApiRequest[Any, Any], facility_id: str) -> list[SessionOptionOut]:
    rows = await req.session.scalars(select(SessionOption).where(SessionOption.facility_id == facility_id)
                                     .order_by(SessionOption.visit_type, SessionOption.length_minutes))
    return [SessionOptionOut(visit_type=o.visit_type, length_minutes=o.length_minutes, price_cents=o.price_cents,
                             per_minute_cents=o.per_minute_cents) for o in rows.all()]


@routes.get("/v1/facilities/{facility_id}/session-options", summary="List session lengths and prices",
            roles=EVERYONE, tags=TAGS, response=list[SessionOptionOut])
async def list_session_options(req: ApiRequest[Any, Any]) -> list[SessionOptionOut]:
    facility = await facility_for(req, req.path("facility_id"))
    return await _options(req, facility.id)


class FeeIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    kind: Literal["fee", "tax"]
    amount_cents: int = Field(default=0, ge=0, le=100_000)
    rate_basis_points: int = Field(default=0, ge=0, le=10_000, description="share of the price, 100 = 1%")


class FeesIn(Strict):
    fees: list[FeeIn] = Field(max_length=20)


class FeeOut(BaseModel):
    name: str
    kind: str
    amount_cents: int
    rate_basis_points: int


@routes.put("/v1/facilities/{facility_id}/fees", summary="Replace the fees and taxes shown in quotes",
            roles={Role.OPERATOR}, tags=TAGS, body=FeesIn, response=list[FeeOut])
async def replace_fees(req: ApiRequest[FeesIn, Any]) -> list[FeeOut]:
    """M7: fees default to none; only the operator sets them, and each is itemised in quotes."""
    facility = await locked_facility(req)
    await config.replace_fees(req.session, facility, [f.model_dump() for f in req.body.fees])
    return await _fees(req, facility.id)


async def _fees(req: ApiRequest[Any, Any], facility_id: str) -> list[FeeOut]:
    rows = await req.session.scalars(select(FeeItem).where(FeeItem.facility_id == facility_id).order_by(FeeItem.name))
    return [FeeOut(name=f.name, kind=f.kind, amount_cents=f.amount_cents, rate_basis_points=f.rate_basis_points)
            for f in rows.all()]


@routes.get("/v1/facilities/{facility_id}/fees", summary="List fees and taxes", roles=EVERYONE, tags=TAGS,
            response=list[FeeOut])
async def list_fees(req: ApiRequest[Any, Any]) -> list[FeeOut]:
    facility = await facility_for(req, req.path("facility_id"))
    return await _fees(req, facility.id)
