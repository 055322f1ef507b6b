"""What the facility routes share: their tag, who may read and change, and loading a facility's
child rows from the path (V3)."""

from __future__ import annotations

from typing import Any

from control_api.api import ApiRequest
from control_api.auth import USER_ROLES, Role
from control_api.db.models import Facility, HousingUnit
from control_api.routes.common import facility_for, get_or_404, same_facility
from control_api.services import facility_configuration as config

TAGS = ("facilities",)
ADMINS = {Role.ADMIN, Role.OPERATOR}
STAFF_READ = {Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR, Role.OPERATOR}
EVERYONE = {*USER_ROLES, Role.KIOSK}


async def locked_facility(req: ApiRequest[Any, Any]) -> Facility:
    """The facility in the path (404, V3 checked), re-read under a row lock: changes checked
    against each other take it (services.facility_configuration)."""
    facility = await facility_for(req, req.path("facility_id"))
    await config.lock(req.session, facility)
    return facility


async def unit_in_path(req: ApiRequest[Any, Any]) -> HousingUnit:
    """The housing unit in the path, of the facility in the path (404 otherwise, V3 checked)."""
    facility = await facility_for(req, req.path("facility_id"))
    unit = await get_or_404(req.session, HousingUnit, req.path("unit_id"), "housing unit")
    same_facility(req, unit.facility_id, facility.id, "housing unit")
    return unit
