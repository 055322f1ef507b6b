"""The resident roster per facility and housing unit, with all-or-nothing CSV import."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import HousingUnit, Resident
from control_api.problems import bad_request, conflict, forbidden, not_found, unprocessable
from control_api.routes.common import Id, Strict, Text200, facility_for, get_or_404, same_facility
from control_api.services.access import has_approved_access

routes = ApiRoutes()
TAGS = ("residents",)
ADMINS = {Role.ADMIN, Role.OPERATOR}
STAFF = {Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR, Role.OPERATOR}
BookingNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9\-]{1,32}$")]
MAX_IMPORT_ROWS = 20_000


class ResidentIn(Strict):
    booking_number: BookingNumber
    full_name: Text200
    housing_unit_id: Id


class ResidentUpdate(Strict):
    full_name: Text200 | None = None
    housing_unit_id: Id | None = None
    active: bool | None = None


class ResidentOut(BaseModel):
    id: str
    facility_id: str
    housing_unit_id: str
    booking_number: str
    full_name: str
    active: bool

    @classmethod
    def of(cls, r: Resident) -> ResidentOut:
        return cls(id=r.id, facility_id=r.facility_id, housing_unit_id=r.housing_unit_id,
                   booking_number=r.booking_number, full_name=r.full_name, active=r.active)


class ResidentPublic(BaseModel):
    """What an approved visitor may learn about a resident."""

    id: str
    full_name: str
    booking_number: str
    housing_unit_id: str


class ResidentQuery(BaseModel):
    housing_unit_id: Id | None = None
    q: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100)] | None = Field(
        default=None, description="part of a name or booking number")


class LookupQuery(BaseModel):
    booking_number: BookingNumber


class ImportResult(BaseModel):
    created: int
    updated: int


async def _unit_in(req: ApiRequest[Any, Any], unit_id: str, facility_id: str) -> HousingUnit:
    unit = await get_or_404(req.session, HousingUnit, unit_id, "housing unit")
    same_facility(req, unit.facility_id, facility_id, "housing unit")
    return unit


@routes.post("/v1/facilities/{facility_id}/residents", summary="Add a resident", roles=ADMINS, tags=TAGS,
             body=ResidentIn, response=ResidentOut, status=201, errors=(409,))
async def create_resident(req: ApiRequest[ResidentIn, Any]) -> ResidentOut:
    facility = await facility_for(req, req.path("facility_id"))
    await _unit_in(req, req.body.housing_unit_id, facility.id)
    exists = await req.session.scalar(select(Resident.id).where(Resident.facility_id == facility.id,
                                                                Resident.booking_number == req.body.booking_number))
    if exists:
        raise conflict(f"booking number {req.body.booking_number} already exists", slug="resident-exists")
    resident = Resident(facility_id=facility.id, **req.body.model_dump())
    req.session.add(resident)
    await req.session.flush()
    return ResidentOut.of(resident)


@routes.get("/v1/facilities/{facility_id}/residents", summary="List residents", roles=STAFF, tags=TAGS,
            query=ResidentQuery, response=list[ResidentOut])
async def list_residents(req: ApiRequest[Any, ResidentQuery]) -> list[ResidentOut]:
    facility = await facility_for(req, req.path("facility_id"))
    stmt = select(Resident).where(Resident.facility_id == facility.id)
    if req.query.housing_unit_id:
        stmt = stmt.where(Resident.housing_unit_id == req.query.housing_unit_id)
    if req.query.q:
        escaped = req.query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        stmt = stmt.where(Resident.full_name.ilike(like, escape="\\")
                          | Resident.booking_number.ilike(like, escape="\\"))
    rows = await req.session.scalars(stmt.order_by(Resident.full_name).limit(1000))
    return [ResidentOut.of(r) for r in rows.all()]


@routes.get("/v1/facilities/{facility_id}/residents/lookup", summary="Find a resident by booking number",
            roles={Role.VISITOR, Role.ATTORNEY}, tags=TAGS, query=LookupQuery, response=ResidentPublic)
async def lookup_resident(req: ApiRequest[Any, LookupQuery]) -> ResidentPublic:
    """Only for visitors the facility approved (V1), and only what booking needs: an exact booking
    number, never a search, so the roster cannot be browsed."""
    facility = await facility_for(req, req.path("facility_id"))
    if not await has_approved_access(req.session, req.principal.id, facility.id):
        raise forbidden("the facility has not approved your access request (rule V1)")
    resident = await req.session.scalar(select(Resident).where(
        Resident.facility_id == facility.id, Resident.booking_number == req.query.booking_number,
        Resident.active.is_(True)))
    if resident is None:
        raise not_found(f"resident with booking number {req.query.booking_number}")
    return ResidentPublic(id=resident.id, full_name=resident.full_name, booking_number=resident.booking_number,
                          housing_unit_id=resident.housing_unit_id)


@routes.patch("/v1/facilities/{facility_id}/residents/{resident_id}", summary="Move or deactivate a resident",
              roles=ADMINS, tags=TAGS, body=ResidentUpdate, response=ResidentOut)
async def update_resident(req: ApiRequest[ResidentUpdate, Any]) -> ResidentOut:
    facility = await facility_for(req, req.path("facility_id"))
    resident = await get_or_404(req.session, Resident, req.path("resident_id"), "resident")
    same_facility(req, resident.facility_id, facility.id, "resident")
    changes = req.body.model_dump(exclude_none=True)
    if not changes:
        raise bad_request("nothing to change", slug="empty-update")
    if "housing_unit_id" in changes:
        await _unit_in(req, changes["housing_unit_id"], facility.id)
    for name, value in changes.items():
        setattr(resident, name, value)
    return ResidentOut.of(resident)


@routes.post("/v1/facilities/{facility_id}/residents/import", summary="Import the roster from CSV",
             roles=ADMINS, tags=TAGS, raw_body=("text/csv",), response=ImportResult, errors=(409, 413, 415),
             description="Columns: booking_number, full_name, housing_unit (the unit's name). All rows are "
                         "checked first; any bad row rejects the whole file with every problem listed. Known booking "
                         "numbers are updated (and reactivated), new ones created; residents missing from the "
                         "file are left as they are.")
async def import_residents(req: ApiRequest[Any, Any]) -> ImportResult:
    facility = await facility_for(req, req.path("facility_id"))
    try:
        text = (req.raw or b"").decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise bad_request("the CSV file must be UTF-8", slug="bad-encoding") from exc
    if "\x00" in text:  # not text; PostgreSQL also refuses NUL characters in strings
        raise bad_request("the CSV file contains NUL characters", slug="bad-encoding")
    # newline="": the csv module reads CRLF, LF and bare CR line ends itself (and newlines inside quotes).
    reader = csv.DictReader(io.StringIO(text, newline=""))
    required = {"booking_number", "full_name", "housing_unit"}
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        raise unprocessable(f"the CSV file is malformed: {exc}", slug="bad-csv") from exc
    if fieldnames is None or not required <= {f.strip() for f in fieldnames}:
        raise unprocessable(f"the header row must name the columns {', '.join(sorted(required))}",
                            slug="bad-csv-header")
    units = {u.name: u.id for u in (await req.session.scalars(
        select(HousingUnit).where(HousingUnit.facility_id == facility.id))).all()}
    rows: list[tuple[str, str, str]] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if len(rows) + len(problems) >= MAX_IMPORT_ROWS:
                raise unprocessable(f"at most {MAX_IMPORT_ROWS} rows per import", slug="too-many-rows")
            values = {(k or "").strip(): (v or "").strip() for k, v in record.items() if isinstance(v, str)}
            number, name, unit = values.get("booking_number", ""), values.get("full_name", ""), values.get(
                "housing_unit", "")
            errors = []
            if not number or len(number) > 32 or not all(c.isalnum() or c == "-" for c in number):
                errors.append("booking_number must be 1-32 letters, digits or dashes")
            if not name or len(name) > 200:
                errors.append("full_name must be 1-200 characters")
            if unit not in units:
                errors.append(f"unknown housing unit {unit!r}")
            if number in seen:
                errors.append(f"booking number {number} repeats line {seen[number]}")
            seen.setdefault(number, line)
            if errors:
                problems.append({"line": line, "errors": errors})
            else:
                rows.append((number, name, units[unit]))
    except csv.Error as exc:
        raise unprocessable(f"the CSV file is malformed: {exc}", slug="bad-csv") from exc
    if problems:
        first = problems[0]
        raise unprocessable(f"{len(problems)} bad row(s); nothing was imported; line {first['line']}: "
                            f"{'; '.join(first['errors'])}", slug="bad-csv-rows", problems=problems)
    if not rows:
        raise unprocessable("the CSV file has no rows", slug="bad-csv")
    existing = {r.booking_number: r for r in (await req.session.scalars(
        select(Resident).where(Resident.facility_id == facility.id))).all()}
    created = updated = 0
    for number, name, unit_id in rows:
        resident = existing.get(number)
        if resident is None:
            req.session.add(Resident(facility_id=facility.id, booking_number=number, full_name=name,
                                     housing_unit_id=unit_id))
            created += 1
        else:
            resident.full_name, resident.housing_unit_id, resident.active = name, unit_id, True
            updated += 1
    await req.session.flush()
    return ImportResult(created=created, updated=updated)
