"""Facilities and their settings (rules A1, A5-A8, M8)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, field_validator
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Facility
from control_api.domain.facility_rules import timezone_problem
from control_api.domain.rates import SIZE_TIERS
from control_api.problems import bad_request
from control_api.routes.common import Strict, Text200, facility_for
from control_api.routes.facilities.scope import ADMINS, EVERYONE, TAGS, locked_facility
from control_api.services import facility_configuration as config

routes = ApiRoutes()


SizeTier = Literal["prison", "jail_1000_plus", "jail_350_999", "jail_100_349", "jail_50_99", "jail_under_50"]
assert set(SizeTier.__args__) == set(SIZE_TIERS)  # type: ignore[attr-defined]


class FacilitySettings(Strict):
    timezone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] | None = None
    booking_horizon_days: int | None = Field(default=None, ge=1, le=365, description="A5")
    min_lead_minutes: int | None = Field(default=None, ge=0, le=60 * 24 * 30, description="A5")
    cancellation_notice_hours: int | None = Field(default=None, ge=0, le=24 * 30, description="A6")
    weekly_visit_limit: int | None = Field(default=None, ge=1, le=100, description="A7")
    review_mode: Literal["auto", "manual"] | None = Field(default=None, description="A7")
    retention_days: int | None = Field(default=None, ge=1, le=3650, description="A8")
    billing_mode: Literal["per_visit", "per_minute"] | None = Field(default=None, description="M8")
    size_tier: SizeTier | None = Field(default=None, description="M8: sets the per-minute cap; operator only")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and (problem := timezone_problem(value)):
            raise ValueError(problem)
        return value


class FacilityCreate(FacilitySettings):
    name: Text200
    timezone: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class FacilityUpdate(FacilitySettings):
    name: Text200 | None = None


class FacilityOut(BaseModel):
    id: str
    name: str
    timezone: str
    booking_horizon_days: int
    min_lead_minutes: int
    cancellation_notice_hours: int
    weekly_visit_limit: int
    review_mode: str
    retention_days: int
    billing_mode: str
    size_tier: str
    created_at: datetime

    @classmethod
    def of(cls, f: Facility) -> FacilityOut:
        return cls(id=f.id, name=f.name, timezone=f.timezone, booking_horizon_days=f.booking_horizon_days,
                   min_lead_minutes=f.min_lead_minutes, cancellation_notice_hours=f.cancellation_notice_hours,
                   weekly_visit_limit=f.weekly_visit_limit, review_mode=f.review_mode,
                   retention_days=f.retention_days, billing_mode=f.billing_mode, size_tier=f.size_tier,
                   created_at=f.created_at)


@routes.post("/v1/facilities", summary="Create a facility", roles={Role.OPERATOR}, tags=TAGS,
             body=FacilityCreate, response=FacilityOut, status=201)
async def create_facility(req: ApiRequest[FacilityCreate, Any]) -> FacilityOut:
    facility = await config.create_facility(req.session, req.body.model_dump(exclude_none=True), req.now)
    return FacilityOut.of(facility)


@routes.get("/v1/facilities", summary="List facilities", roles=EVERYONE, tags=TAGS, response=list[FacilityOut])
async def list_facilities(req: ApiRequest[Any, Any]) -> list[FacilityOut]:
    stmt = select(Facility).order_by(Facility.name)
    if req.principal.facility_id is not None:  # staff and kiosks see only their own (V3)
        stmt = stmt.where(Facility.id == req.principal.facility_id)
    return [FacilityOut.of(f) for f in (await req.session.scalars(stmt)).all()]


@routes.get("/v1/facilities/{facility_id}", summary="Read a facility", roles=EVERYONE, tags=TAGS,
            response=FacilityOut)
async def read_facility(req: ApiRequest[Any, Any]) -> FacilityOut:
    return FacilityOut.of(await facility_for(req, req.path("facility_id")))


@routes.patch("/v1/facilities/{facility_id}", summary="Configure a facility", roles=ADMINS, tags=TAGS,
              body=FacilityUpdate, response=FacilityOut)
async def update_facility(req: ApiRequest[FacilityUpdate, Any]) -> FacilityOut:
    """Changing the billing mode or size tier re-checks every per-minute price (M8).

    The size tier is a regulatory classification that sets the facility's own price cap, so only
    the operator changes it: a facility admin could otherwise lift its cap by re-classifying."""
    facility = await locked_facility(req)
    changes = req.body.model_dump(exclude_none=True)
    if not changes:
        raise bad_request("nothing to change", slug="empty-update")
    await config.configure(req.session, facility, changes, by=req.principal.role)
    return FacilityOut.of(facility)
