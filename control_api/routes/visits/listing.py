"""Listing visits and reading one (V3: each caller sees what services.visit_access allows)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Facility, Resident, Visit
from control_api.routes.common import Id, InstantOrDay
from control_api.routes.visits.views import (
    STAFF,
    TAGS,
    VISITORS,
    VisitOut,
    VisitStatus,
    for_staff,
    visible_visit,
    visit_out,
)
from control_api.services import booking, visit_access

routes = ApiRoutes()


class VisitQuery(BaseModel):
    status: VisitStatus | None = None
    resident_id: Id | None = None
    facility_id: Id | None = None
    from_: InstantOrDay | None = Field(default=None, alias="from", description=(
        "visits starting at or after this instant, or on or after this local date (facility time, A1)"))
    to: InstantOrDay | None = Field(default=None, description=(
        "visits starting before this instant, or on or before this local date (facility time, A1)"))
    limit: int = Field(default=100, ge=1, le=500)


def _local_midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


async def _starts_filter(req: ApiRequest[Any, VisitQuery], facility_id: str | None) -> ColumnElement[bool] | None:
    """`from`/`to` as a condition on starts_at. Dates are local to each visit's facility, so with
    several facilities in view there is one pair of bounds per time zone."""
    q = req.query
    if q.from_ is None and q.to is None:
        return None

    def bounds(zone: str | None) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if isinstance(q.from_, datetime):
            out.append(Visit.starts_at >= q.from_)
        elif q.from_ is not None and zone is not None:
            out.append(Visit.starts_at >= _local_midnight(q.from_, zone))
        if isinstance(q.to, datetime):
            out.append(Visit.starts_at < q.to)
        elif q.to is not None and zone is not None:
            out.append(Visit.starts_at < _local_midnight(q.to + timedelta(days=1), zone))
        return out

    if all(v is None or isinstance(v, datetime) for v in (q.from_, q.to)):
        return and_(*bounds(None))
    stmt = select(Facility.id, Facility.timezone)
    if facility_id is not None:
        stmt = stmt.where(Facility.id == facility_id)
    by_zone: dict[str, list[str]] = {}
    for fid, zone in (await req.session.execute(stmt)).all():
        by_zone.setdefault(zone, []).append(fid)
    if not by_zone:
        return Visit.id.is_(None)
    return or_(*[and_(Visit.facility_id.in_(ids), *bounds(zone)) for zone, ids in by_zone.items()])


@routes.get("/v1/visits", summary="List visits", roles={*VISITORS, *STAFF, Role.OPERATOR, Role.KIOSK}, tags=TAGS,
            query=VisitQuery, response=list[VisitOut])
async def list_visits(req: ApiRequest[Any, VisitQuery]) -> list[VisitOut]:
    """Visitors see their own, staff their facility's (V3), a kiosk its housing unit's upcoming
    ones, operators everything; filters: status, resident_id, facility_id, from, to."""
    p, q = req.principal, req.query
    stmt = select(Visit, Resident.full_name).join(Resident, Resident.id == Visit.resident_id)
    visible = visit_access.visible_to(p)
    if visible is not None:
        stmt = stmt.where(visible)
    scope = q.facility_id
    if p.role is Role.KIOSK:  # only the upcoming ones
        stmt = stmt.where(Visit.ends_at > req.now, Visit.status.in_(("scheduled", "in_progress")))
        scope = p.facility_id
    elif p.role not in VISITORS and p.role is not Role.OPERATOR:
        if q.facility_id and q.facility_id != p.facility_id:
            req.require_facility(q.facility_id)
        scope = p.facility_id
    if q.facility_id:
        stmt = stmt.where(Visit.facility_id == q.facility_id)
    if q.status:
        stmt = stmt.where(Visit.status == q.status)
    if q.resident_id:
        stmt = stmt.where(Visit.resident_id == q.resident_id)
    starts = await _starts_filter(req, scope)
    if starts is not None:
        stmt = stmt.where(starts)
    rows = (await req.session.execute(stmt.order_by(Visit.starts_at, Visit.id).limit(q.limit))).all()
    paid = await booking.paid_with(req.session, [v.id for v, _ in rows])
    return [for_staff(req, VisitOut.of(v, name, paid.get(v.id)), v) for v, name in rows]


@routes.get("/v1/visits/{visit_id}", summary="Read a visit", roles={*VISITORS, *STAFF, Role.OPERATOR, Role.KIOSK},
            tags=TAGS, response=VisitOut)
async def read_visit(req: ApiRequest[Any, Any]) -> VisitOut:
    visit = await visible_visit(req, req.path("visit_id"))
    return for_staff(req, await visit_out(req, visit), visit)
