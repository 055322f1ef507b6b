"""Housing units (A4), their weekly visitation windows (A2) and closures (A2)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, model_validator
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.db.models import Closure, HousingUnit, VisitationWindow
from control_api.domain.facility_rules import WEEKDAYS, WindowSpec, format_minute, parse_hhmm
from control_api.problems import bad_request
from control_api.routes.common import Id, Instant, Strict, Text200, facility_for, get_or_404, same_facility
from control_api.routes.facilities.scope import ADMINS, EVERYONE, TAGS, unit_in_path
from control_api.services import facility_configuration as config

routes = ApiRoutes()


# ------------------------------------------------------------------ housing units (A4)


class UnitIn(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    kiosk_count: int = Field(ge=0, le=500, description="A4: simultaneous visits the unit can hold")


class UnitUpdate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    kiosk_count: int | None = Field(default=None, ge=0, le=500)


class UnitOut(BaseModel):
    id: str
    facility_id: str
    name: str
    kiosk_count: int

    @classmethod
    def of(cls, u: HousingUnit) -> UnitOut:
        return cls(id=u.id, facility_id=u.facility_id, name=u.name, kiosk_count=u.kiosk_count)


@routes.post("/v1/facilities/{facility_id}/housing-units", summary="Add a housing unit", roles=ADMINS,
             tags=TAGS, body=UnitIn, response=UnitOut, status=201, errors=(409,))
async def create_unit(req: ApiRequest[UnitIn, Any]) -> UnitOut:
    facility = await facility_for(req, req.path("facility_id"))
    await config.require_free_unit_name(req.session, facility.id, req.body.name)
    unit = HousingUnit(facility_id=facility.id, name=req.body.name, kiosk_count=req.body.kiosk_count)
    req.session.add(unit)
    await req.session.flush()
    return UnitOut.of(unit)


@routes.get("/v1/facilities/{facility_id}/housing-units", summary="List housing units", roles=EVERYONE,
            tags=TAGS, response=list[UnitOut])
async def list_units(req: ApiRequest[Any, Any]) -> list[UnitOut]:
    facility = await facility_for(req, req.path("facility_id"))
    rows = await req.session.scalars(select(HousingUnit).where(HousingUnit.facility_id == facility.id)
                                     .order_by(HousingUnit.name))
    return [UnitOut.of(u) for u in rows.all()]


@routes.patch("/v1/facilities/{facility_id}/housing-units/{unit_id}", summary="Change a housing unit",
              roles=ADMINS, tags=TAGS, body=UnitUpdate, response=UnitOut, errors=(409,))
async def update_unit(req: ApiRequest[UnitUpdate, Any]) -> UnitOut:
    """A lower kiosk count (A4) limits new bookings; visits already booked are kept."""
    unit = await unit_in_path(req)
    if not req.body.model_dump(exclude_none=True):
        raise bad_request("nothing to change", slug="empty-update")
    if req.body.name is not None:
        await config.require_free_unit_name(req.session, unit.facility_id, req.body.name, unit.id)
    for name, value in req.body.model_dump(exclude_none=True).items():
        setattr(unit, name, value)
    return UnitOut.of(unit)


# ------------------------------------------------------------------ weekly windows (A2)

HHMM = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")]


class WindowIn(Strict):
    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    start: HHMM = Field(description="local time HH:MM")
    end: HHMM = Field(description="local time HH:MM; 24:00 for midnight")

    @model_validator(mode="after")
    def _times(self) -> WindowIn:
        parse_hhmm(self.start)
        parse_hhmm(self.end, allow_24=True)
        return self


class WindowsIn(Strict):
    windows: list[WindowIn] = Field(max_length=200)


class WindowOut(BaseModel):
    weekday: int
    weekday_name: str
    start: str
    end: str


@routes.put("/v1/facilities/{facility_id}/housing-units/{unit_id}/windows",
            summary="Replace a housing unit's weekly visitation windows", roles=ADMINS, tags=TAGS,
            body=WindowsIn, response=list[WindowOut])
async def replace_windows(req: ApiRequest[WindowsIn, Any]) -> list[WindowOut]:
    """Atomic: the unit row is locked, so two simultaneous replacements never merge their lists."""
    unit = await unit_in_path(req)
    specs = [WindowSpec(w.weekday, parse_hhmm(w.start), parse_hhmm(w.end, allow_24=True)) for w in req.body.windows]
    await config.replace_windows(req.session, unit, specs)
    return await _windows(req, unit.id)


async def _windows(req: ApiRequest[Any, Any], unit_id: str) -> list[WindowOut]:
    rows = await req.session.scalars(select(VisitationWindow).where(VisitationWindow.housing_unit_id == unit_id)
                                     .order_by(VisitationWindow.weekday, VisitationWindow.start_minute))
    return [WindowOut(weekday=w.weekday, weekday_name=WEEKDAYS[w.weekday], start=format_minute(w.start_minute),
                      end=format_minute(w.end_minute)) for w in rows.all()]


@routes.get("/v1/facilities/{facility_id}/housing-units/{unit_id}/windows",
            summary="Read a housing unit's weekly visitation windows", roles=EVERYONE, tags=TAGS,
            response=list[WindowOut])
async def read_windows(req: ApiRequest[Any, Any]) -> list[WindowOut]:
    unit = await unit_in_path(req)
    return await _windows(req, unit.id)


# ------------------------------------------------------------------ closures (A2)


class ClosureIn(Strict):
    starts_at: Instant
    ends_at: Instant
    reason: Text200
    housing_unit_id: Id | None = Field(default=None, description="omit to close the whole facility")

    @model_validator(mode="after")
    def _span(self) -> ClosureIn:
        try:
            self.starts_at, self.ends_at = self.starts_at.astimezone(UTC), self.ends_at.astimezone(UTC)
        except OverflowError:
            raise ValueError("the dates are out of range") from None
        if self.starts_at >= self.ends_at:
            raise ValueError("starts_at must be before ends_at")
        return self


class ClosureOut(BaseModel):
    id: str
    facility_id: str
    housing_unit_id: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str

    @classmethod
    def of(cls, c: Closure) -> ClosureOut:
        return cls(id=c.id, facility_id=c.facility_id, housing_unit_id=c.housing_unit_id, starts_at=c.starts_at,
                   ends_at=c.ends_at, reason=c.reason)


@routes.post("/v1/facilities/{facility_id}/closures", summary="Add a closure", roles=ADMINS, tags=TAGS,
             body=ClosureIn, response=ClosureOut, status=201)
async def create_closure(req: ApiRequest[ClosureIn, Any]) -> ClosureOut:
    """Existing bookings inside the closure are not cancelled automatically: staff cancel them
    (credited under M3b) so each visitor is told individually."""
    facility = await facility_for(req, req.path("facility_id"))
    if req.body.housing_unit_id is not None:
        unit = await get_or_404(req.session, HousingUnit, req.body.housing_unit_id, "housing unit")
        same_facility(req, unit.facility_id, facility.id, "housing unit")
    closure = Closure(facility_id=facility.id, **req.body.model_dump())
    req.session.add(closure)
    await req.session.flush()
    return ClosureOut.of(closure)


@routes.get("/v1/facilities/{facility_id}/closures", summary="List closures", roles=EVERYONE, tags=TAGS,
            response=list[ClosureOut])
async def list_closures(req: ApiRequest[Any, Any]) -> list[ClosureOut]:
    facility = await facility_for(req, req.path("facility_id"))
    rows = await req.session.scalars(select(Closure).where(Closure.facility_id == facility.id)
                                     .order_by(Closure.starts_at))
    return [ClosureOut.of(c) for c in rows.all()]


@routes.delete("/v1/facilities/{facility_id}/closures/{closure_id}", summary="Remove a closure", roles=ADMINS,
               tags=TAGS, response=ClosureOut)
async def delete_closure(req: ApiRequest[Any, Any]) -> ClosureOut:
    facility = await facility_for(req, req.path("facility_id"))
    closure = await get_or_404(req.session, Closure, req.path("closure_id"), "closure")
    same_facility(req, closure.facility_id, facility.id, "closure")
    out = ClosureOut.of(closure)
    await req.session.delete(closure)
    return out
