"""Who may see a visit (V3, S1, P3): services.visit_access, the one rule the visit, media,
monitoring and privilege routes share."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.auth import Principal, Role
from control_api.db.models import Visit
from control_api.domain.errors import Forbidden, NotFound
from control_api.services import visit_access

VISIT = Visit(id="v1", facility_id="f1", housing_unit_id="u1", resident_id="r1", booker_id="booker")
BOOKER = Principal(id="booker", role=Role.VISITOR)
ATTORNEY = Principal(id="booker", role=Role.ATTORNEY)
STRANGER = Principal(id="someone-else", role=Role.VISITOR)
OFFICER_HERE = Principal(id="o1", role=Role.OFFICER, facility_id="f1")
OFFICER_THERE = Principal(id="o2", role=Role.OFFICER, facility_id="f2")
KIOSK_HERE = Principal(id="k1", role=Role.KIOSK, facility_id="f1", housing_unit_id="u1")
KIOSK_NEXT_DOOR = Principal(id="k2", role=Role.KIOSK, facility_id="f1", housing_unit_id="u2")
OPERATOR = Principal(id="op", role=Role.OPERATOR)


class _Session:
    """Just enough of an AsyncSession for an unlocked read."""

    def __init__(self, *rows: Visit) -> None:
        self.rows = {r.id: r for r in rows}

    async def get(self, _model: Any, ident: str) -> Visit | None:
        return self.rows.get(ident)


def _session(*rows: Visit) -> AsyncSession:
    return cast(AsyncSession, _Session(*rows))


def test_who_sees_the_visit() -> None:
    seen = {p.id + ":" + p.role.value: visit_access.can_see(p, VISIT)
            for p in (BOOKER, ATTORNEY, STRANGER, OFFICER_HERE, OFFICER_THERE, KIOSK_HERE, KIOSK_NEXT_DOOR, OPERATOR)}
    assert seen == {"booker:visitor": True, "booker:attorney": True, "someone-else:visitor": False,
                    "o1:officer": True, "o2:officer": False, "k1:kiosk": True, "k2:kiosk": False,
                    "op:operator": True}


def test_the_listing_condition_is_the_same_rule() -> None:
    assert visit_access.visible_to(OPERATOR) is None
    for principal, expected in ((BOOKER, Visit.booker_id == "booker"), (OFFICER_HERE, Visit.facility_id == "f1"),
                                (KIOSK_HERE, Visit.housing_unit_id == "u1")):
        condition = visit_access.visible_to(principal)
        assert condition is not None and condition.compare(expected)


async def test_a_booker_probing_another_visit_learns_nothing() -> None:
    with pytest.raises(NotFound) as missing:
        await visit_access.visible_visit(_session(), BOOKER, "nope")
    with pytest.raises(NotFound) as others:
        await visit_access.visible_visit(_session(VISIT), STRANGER, "v1")
    assert missing.value.detail == others.value.detail == "visit not found"
    assert missing.value.slug == others.value.slug == "not-found"


async def test_staff_and_kiosks_elsewhere_are_refused_with_the_callers_reason() -> None:
    """V3: another facility's staff (or another unit's kiosk) get 403, with the route's sentence."""
    with pytest.raises(Forbidden) as refused:
        await visit_access.visible_visit(_session(VISIT), OFFICER_THERE, "v1")
    assert refused.value.detail == visit_access.ANOTHER_PLACE
    with pytest.raises(Forbidden) as kiosk:
        await visit_access.visible_visit(_session(VISIT), KIOSK_NEXT_DOOR, "v1", refusal="not this kiosk's")
    assert kiosk.value.detail == "not this kiosk's"
    for allowed in (BOOKER, OFFICER_HERE, KIOSK_HERE, OPERATOR):
        assert await visit_access.visible_visit(_session(VISIT), allowed, "v1") is VISIT


def test_facility_scope() -> None:
    """V3: operators act everywhere, staff and kiosks only in their own facility."""
    visit_access.require_facility(OPERATOR, "f2")
    visit_access.require_facility(OFFICER_HERE, "f1")
    with pytest.raises(Forbidden, match="another facility"):
        visit_access.require_facility(OFFICER_HERE, "f2")
    with pytest.raises(Forbidden):
        visit_access.require_facility(Principal(id="x", role=Role.ADMIN), "f1")
