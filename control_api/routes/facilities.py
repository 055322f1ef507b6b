"""Facility configuration (rules A1-A8, M7, M8): units, windows, closures, prices, fees, kiosks, staff."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints, field_validator, model_validator
from sqlalchemy import delete, func, select, update

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import USER_ROLES, Role, hash_password
from control_api.db.models import (
    AuthSession,
    Closure,
    Facility,
    FeeItem,
    HousingUnit,
    Kiosk,
    SessionOption,
    User,
    VisitationWindow,
)
from control_api.domain.facility_rules import (
    WEEKDAYS,
    WindowSpec,
    booking_window_problem,
    format_minute,
    parse_hhmm,
    rate_cap_problem,
    timezone_problem,
    window_problems,
)
from control_api.domain.rates import SIZE_TIERS
from control_api.problems import bad_request, conflict, forbidden, unprocessable
from control_api.routes.common import Id, Instant, Strict, Text200, facility_for, get_or_404, same_facility

routes = ApiRoutes()
TAGS = ("facilities",)
ADMINS = {Role.ADMIN, Role.OPERATOR}
STAFF_READ = {Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR, Role.OPERATOR}
EVERYONE = {*USER_ROLES, Role.KIOSK}

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


async def _locked_facility(req: ApiRequest[Any, Any]) -> Facility:
    """The facility (404, V3 checked), re-read under a row lock. Changes that are checked against
    each other (billing mode and size tier against per-minute prices, M8) take this lock, so two
    simultaneous requests cannot each pass their check and together break the rule."""
    facility = await facility_for(req, req.path("facility_id"))
    await req.session.refresh(facility, with_for_update=True)
    return facility


def _check_booking_window(facility: Facility) -> None:
    """A5: horizon and lead time are checked together, whichever of the two changed."""
    problem = booking_window_problem(booking_horizon_days=facility.booking_horizon_days,
                                     min_lead_minutes=facility.min_lead_minutes)
    if problem:
        raise unprocessable(problem, slug="invalid-booking-window")


async def _check_rates(req: ApiRequest[Any, Any], facility: Facility) -> None:
    """M8: re-check every per-minute price whenever the mode, tier or prices change."""
    options = (await req.session.scalars(select(SessionOption).where(SessionOption.facility_id == facility.id))).all()
    for o in options:
        problem = rate_cap_problem(billing_mode=facility.billing_mode, size_tier=facility.size_tier,
                                   per_minute_cents=o.per_minute_cents, visit_type=o.visit_type)
        if problem:
            raise unprocessable(problem, slug="rate-above-cap")


@routes.post("/v1/facilities", summary="Create a facility", roles={Role.OPERATOR}, tags=TAGS,
             body=FacilityCreate, response=FacilityOut, status=201)
async def create_facility(req: ApiRequest[FacilityCreate, Any]) -> FacilityOut:
    values = req.body.model_dump(exclude_none=True)
    facility = Facility(**values, created_at=req.now)
    req.session.add(facility)
    await req.session.flush()  # column defaults are filled in from here on
    _check_booking_window(facility)
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
    facility = await _locked_facility(req)
    changes = req.body.model_dump(exclude_none=True)
    if not changes:
        raise bad_request("nothing to change", slug="empty-update")
    if ("size_tier" in changes and changes["size_tier"] != facility.size_tier
            and req.principal.role is not Role.OPERATOR):
        raise forbidden("only the operator changes a facility's size tier, which sets its price cap (rule M8)")
    for name, value in changes.items():
        setattr(facility, name, value)
    _check_booking_window(facility)
    await _check_rates(req, facility)
    return FacilityOut.of(facility)


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


async def _unit(req: ApiRequest[Any, Any]) -> HousingUnit:
    facility = await facility_for(req, req.path("facility_id"))
    unit = await get_or_404(req.session, HousingUnit, req.path("unit_id"), "housing unit")
    same_facility(req, unit.facility_id, facility.id, "housing unit")
    return unit


async def _unit_name_taken(req: ApiRequest[Any, Any], facility_id: str, name: str, except_id: str = "") -> bool:
    found = await req.session.scalar(select(HousingUnit.id).where(
        HousingUnit.facility_id == facility_id, HousingUnit.name == name, HousingUnit.id != except_id))
    return found is not None


@routes.post("/v1/facilities/{facility_id}/housing-units", summary="Add a housing unit", roles=ADMINS,
             tags=TAGS, body=UnitIn, response=UnitOut, status=201, errors=(409,))
async def create_unit(req: ApiRequest[UnitIn, Any]) -> UnitOut:
    facility = await facility_for(req, req.path("facility_id"))
    if await _unit_name_taken(req, facility.id, req.body.name):
        raise conflict(f"housing unit {req.body.name!r} already exists", slug="unit-exists")
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
    unit = await _unit(req)
    if not req.body.model_dump(exclude_none=True):
        raise bad_request("nothing to change", slug="empty-update")
    if req.body.name is not None and await _unit_name_taken(req, unit.facility_id, req.body.name, unit.id):
        raise conflict(f"housing unit {req.body.name!r} already exists", slug="unit-exists")
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
    unit = await _unit(req)
    await req.session.refresh(unit, with_for_update=True)
    specs = [WindowSpec(w.weekday, parse_hhmm(w.start), parse_hhmm(w.end, allow_24=True)) for w in req.body.windows]
    problems = window_problems(specs)
    if problems:
        raise unprocessable("; ".join(problems) + " (rule A2)", slug="invalid-windows", problems=problems)
    await req.session.execute(delete(VisitationWindow).where(VisitationWindow.housing_unit_id == unit.id))
    req.session.add_all(VisitationWindow(housing_unit_id=unit.id, weekday=s.weekday, start_minute=s.start_minute,
                                         end_minute=s.end_minute) for s in specs)
    await req.session.flush()
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
    unit = await _unit(req)
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
    facility = await _locked_facility(req)
    seen = set()
    for o in req.body.options:
        key = (o.visit_type, o.length_minutes)
        if key in seen:
            raise unprocessable(f"{o.length_minutes}-minute {o.visit_type} is listed twice", slug="duplicate-option")
        seen.add(key)
    await req.session.execute(delete(SessionOption).where(SessionOption.facility_id == facility.id))
    req.session.add_all(SessionOption(facility_id=facility.id, **o.model_dump()) for o in req.body.options)
    await req.session.flush()
    await _check_rates(req, facility)
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
    facility = await _locked_facility(req)
    await req.session.execute(delete(FeeItem).where(FeeItem.facility_id == facility.id))
    req.session.add_all(FeeItem(facility_id=facility.id, **f.model_dump()) for f in req.body.fees)
    await req.session.flush()
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


# ------------------------------------------------------------------ kiosks


class KioskIn(Strict):
    housing_unit_id: Id
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class KioskUpdate(Strict):
    active: bool


class KioskOut(BaseModel):
    id: str
    facility_id: str
    housing_unit_id: str
    name: str
    active: bool
    secret: str | None = Field(default=None, description="shown once, at creation")

    @classmethod
    def of(cls, k: Kiosk, secret: str | None = None) -> KioskOut:
        return cls(id=k.id, facility_id=k.facility_id, housing_unit_id=k.housing_unit_id, name=k.name,
                   active=k.active, secret=secret)


@routes.post("/v1/facilities/{facility_id}/kiosks", summary="Register a kiosk", roles=ADMINS, tags=TAGS,
             body=KioskIn, response=KioskOut, status=201)
async def create_kiosk(req: ApiRequest[KioskIn, Any]) -> KioskOut:
    facility = await facility_for(req, req.path("facility_id"))
    unit = await get_or_404(req.session, HousingUnit, req.body.housing_unit_id, "housing unit")
    same_facility(req, unit.facility_id, facility.id, "housing unit")
    secret = secrets.token_urlsafe(24)
    kiosk = Kiosk(facility_id=facility.id, housing_unit_id=unit.id, name=req.body.name,
                  secret_hash=hash_password(secret))
    req.session.add(kiosk)
    await req.session.flush()
    return KioskOut.of(kiosk, secret)


@routes.get("/v1/facilities/{facility_id}/kiosks", summary="List kiosks", roles=STAFF_READ, tags=TAGS,
            response=list[KioskOut])
async def list_kiosks(req: ApiRequest[Any, Any]) -> list[KioskOut]:
    facility = await facility_for(req, req.path("facility_id"))
    rows = await req.session.scalars(select(Kiosk).where(Kiosk.facility_id == facility.id).order_by(Kiosk.name))
    return [KioskOut.of(k) for k in rows.all()]


@routes.patch("/v1/facilities/{facility_id}/kiosks/{kiosk_id}", summary="Enable or disable a kiosk",
              roles=ADMINS, tags=TAGS, body=KioskUpdate, response=KioskOut)
async def update_kiosk(req: ApiRequest[KioskUpdate, Any]) -> KioskOut:
    facility = await facility_for(req, req.path("facility_id"))
    kiosk = await get_or_404(req.session, Kiosk, req.path("kiosk_id"), "kiosk")
    same_facility(req, kiosk.facility_id, facility.id, "kiosk")
    kiosk.active = req.body.active
    return KioskOut.of(kiosk)


@routes.post("/v1/facilities/{facility_id}/kiosks/{kiosk_id}/secret", summary="Rotate a kiosk's secret",
             roles=ADMINS, tags=TAGS, response=KioskOut)
async def rotate_kiosk_secret(req: ApiRequest[Any, Any]) -> KioskOut:
    """A new secret, shown once in this answer: the old one stops working at once and the kiosk's
    open sessions end, so a lost or copied secret is useless. The kiosk signs in again with the new one."""
    facility = await facility_for(req, req.path("facility_id"))
    kiosk = await get_or_404(req.session, Kiosk, req.path("kiosk_id"), "kiosk")
    same_facility(req, kiosk.facility_id, facility.id, "kiosk")
    secret = secrets.token_urlsafe(24)
    kiosk.secret_hash = hash_password(secret)
    await req.session.execute(update(AuthSession).where(AuthSession.kiosk_id == kiosk.id,
                                                        AuthSession.revoked_at.is_(None))
                              .values(revoked_at=req.now, revoked_reason="kiosk-secret-rotated"))
    return KioskOut.of(kiosk, secret)


# ------------------------------------------------------------------ staff (V3)


class StaffIn(Strict):
    email: EmailStr
    legal_name: Text200
    role: Literal["admin", "officer", "investigator"]
    password: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class StaffOut(BaseModel):
    id: str
    email: str
    legal_name: str
    role: str
    facility_id: str | None
    active: bool


@routes.post("/v1/facilities/{facility_id}/staff", summary="Add a staff account", roles=ADMINS, tags=TAGS,
             body=StaffIn, response=StaffOut, status=201, errors=(409,))
async def create_staff(req: ApiRequest[StaffIn, Any]) -> StaffOut:
    """Staff belong to exactly one facility (V3); a facility admin adds staff only to their own."""
    facility = await facility_for(req, req.path("facility_id"))
    if req.principal.role is Role.ADMIN and req.principal.facility_id != facility.id:
        raise forbidden("admins add staff only to their own facility")
    email = req.body.email.strip().lower()
    taken = await req.session.scalar(select(func.count()).select_from(User).where(User.email == email))
    if taken:
        raise conflict("an account with this email already exists", slug="email-taken")
    user = User(email=email, password_hash=hash_password(req.body.password), role=req.body.role,
                facility_id=facility.id, legal_name=req.body.legal_name, created_at=req.now,
                email_confirmed_at=req.now)  # the admin vouches for a staff member's address
    req.session.add(user)
    await req.session.flush()
    return StaffOut(id=user.id, email=user.email, legal_name=user.legal_name, role=user.role,
                    facility_id=user.facility_id, active=user.active)


@routes.get("/v1/facilities/{facility_id}/staff", summary="List staff accounts", roles=ADMINS, tags=TAGS,
            response=list[StaffOut])
async def list_staff(req: ApiRequest[Any, Any]) -> list[StaffOut]:
    facility = await facility_for(req, req.path("facility_id"))
    rows = await req.session.scalars(select(User).where(User.facility_id == facility.id).order_by(User.email))
    return [StaffOut(id=u.id, email=u.email, legal_name=u.legal_name, role=u.role, facility_id=u.facility_id,
                     active=u.active) for u in rows.all()]
