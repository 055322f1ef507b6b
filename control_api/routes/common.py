"""Shared pieces of the route modules: strict input models and facility-scoped loading."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.api import ApiRequest
from control_api.auth import Role
from control_api.db.models import Facility
from control_api.problems import not_found

T = TypeVar("T")

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=36)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Strict(BaseModel):
    """Input models reject unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


async def get_or_404(session: AsyncSession, model: type[T], ident: str, what: str) -> T:
    row = await session.get(model, ident)
    if row is None:
        raise not_found(what)
    return row


async def facility_for(req: ApiRequest[Any, Any], facility_id: str) -> Facility:
    """Load a facility; staff and kiosks of another facility are refused (V3)."""
    facility = await get_or_404(req.session, Facility, facility_id, "facility")
    if req.principal.role not in (Role.VISITOR, Role.ATTORNEY):
        req.require_facility(facility.id)
    return facility


def same_facility(req: ApiRequest[Any, Any], row_facility_id: str, expected_facility_id: str, what: str) -> None:
    """A child id must belong to the facility in the path (no mixing of ids across facilities)."""
    if row_facility_id != expected_facility_id:
        raise not_found(what)
