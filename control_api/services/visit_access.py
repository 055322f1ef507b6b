"""Who may see a visit (V3, S1, P3): the one rule every route that reads or acts on a visit uses.

- operators see every visit;
- visitors and attorneys see the visits they booked; anyone else's is "not found" (404), so
  probing ids teaches nothing;
- a kiosk sees the visits of its housing unit;
- facility staff (admins, officers, investigators) see their facility's visits; another
  facility's visit is refused (403, V3).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from control_api.auth import VISITOR_ROLES, Principal, Role
from control_api.db.models import Visit
from control_api.domain.errors import Forbidden, NotFound
from control_api.services.booking import lock_visit

BOOKERS = VISITOR_ROLES  # visitors and attorneys: they see what they booked
ANOTHER_PLACE = "this visit belongs to another facility or housing unit"
ANOTHER_FACILITY = "this resource belongs to another facility"


def require_facility(principal: Principal, facility_id: str) -> None:
    """V3: staff and kiosks act only within their own facility; operators everywhere."""
    if principal.role is Role.OPERATOR:
        return
    if principal.facility_id is None or principal.facility_id != facility_id:
        raise Forbidden(ANOTHER_FACILITY)


def can_see(principal: Principal, visit: Visit) -> bool:
    if principal.role is Role.OPERATOR:
        return True
    if principal.role in BOOKERS:
        return visit.booker_id == principal.id
    if principal.role is Role.KIOSK:
        return visit.housing_unit_id == principal.housing_unit_id
    return visit.facility_id == principal.facility_id


def visible_to(principal: Principal) -> ColumnElement[bool] | None:
    """`can_see` as a query condition (None: every visit), for listings."""
    if principal.role is Role.OPERATOR:
        return None
    if principal.role in BOOKERS:
        return Visit.booker_id == principal.id
    if principal.role is Role.KIOSK:
        return Visit.housing_unit_id == principal.housing_unit_id
    return Visit.facility_id == principal.facility_id


async def find_visit(session: AsyncSession, visit_id: str, *, lock: bool = False) -> Visit:
    """The visit, or NotFound. With `lock`, the row stays locked until commit (every change of a
    visit's state), so two changes of one visit run one after the other."""
    visit = await (lock_visit(session, visit_id) if lock else session.get(Visit, visit_id))
    if visit is None:
        raise NotFound.of("visit")
    return visit


async def visible_visit(session: AsyncSession, principal: Principal, visit_id: str, *, lock: bool = False,
                        refusal: str = ANOTHER_PLACE) -> Visit:
    """The visit if `principal` may see it: a booker probing others' visits gets NotFound (nothing
    to learn), anyone else who may not see it Forbidden with `refusal` (V3)."""
    visit = await find_visit(session, visit_id, lock=lock)
    if principal.role in BOOKERS and visit.booker_id != principal.id:
        raise NotFound.of("visit")
    if not can_see(principal, visit):
        raise Forbidden(refusal)
    return visit
