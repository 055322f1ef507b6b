"""Builds a complete facility through the real API, as an operator and the facility's admin would.

    w = await build_facility(api)                       # unit "A", resident R-1, kiosk, staff
    visitor = await w.approved_visitor(api)             # V1 access approved
    attorney = await w.approved_visitor(api, "attorney")  # and Bar number verified (V2)
    w = await build_facility(api, units=("A", "B"), residents=[("R-1", "One", "A"), ("R-2", "Two", "B")],
                             billing_mode="per_minute", size_tier="jail_100_349", visitor=True)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from control_api.auth import Role
from tests.support import PNG, Api, As

ALL_DAY = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
DEFAULT_OPTIONS = [
    {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 20},
    {"visit_type": "social", "length_minutes": 20, "price_cents": 500, "per_minute_cents": 20},
    {"visit_type": "privileged", "length_minutes": 30, "price_cents": 0},
]
_names = itertools.count(1)


@dataclass
class FacilityWorld:
    facility_id: str
    unit_id: str  # the first unit
    resident_id: str  # the first resident
    kiosk_id: str  # the first unit's kiosk
    kiosk_secret: str
    operator: As
    admin: As
    officer: As
    investigator: As
    kiosk: As  # signed in as the first unit's kiosk
    facility: dict[str, Any] = field(default_factory=dict)
    unit_ids: dict[str, str] = field(default_factory=dict)  # unit name -> id
    resident_ids: dict[str, str] = field(default_factory=dict)  # booking number -> id
    kiosks: dict[str, As] = field(default_factory=dict)  # unit name -> signed-in kiosk
    visitor: As | None = None  # with build_facility(visitor=True)
    attorney: As | None = None  # with build_facility(attorney=True)

    def path(self, rest: str = "") -> str:
        """`w.path("/residents")` -> "/v1/facilities/<id>/residents"."""
        return f"/v1/facilities/{self.facility_id}{rest}"

    async def approved_visitor(self, api: Api, role: str = "visitor") -> As:
        """Sign up, upload a photo ID, request access, and have the admin approve it (V1);
        attorneys also get their Bar number verified here (V2)."""
        visitor = await api.sign_up(role)
        (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
        request = (await visitor.post(self.path("/access-requests"))).ok(201)
        (await self.admin.post(self.path(f"/access-requests/{request['id']}/decision"), {"decision": "approve"})).ok()
        if role == "attorney":
            ver = (await visitor.post(self.path("/bar-verifications"))).ok(201)
            (await self.admin.post(self.path(f"/bar-verifications/{ver['id']}/decision"), {"decision": "verify"})).ok()
        return visitor


async def build_facility(api: Api, *, operator: As | None = None, name: str | None = None,
                         timezone: str = "America/Chicago", kiosk_count: int = 1,
                         windows: list[dict[str, Any]] | None = None, options: list[dict[str, Any]] | None = None,
                         fees: list[dict[str, Any]] | None = None, units: Sequence[str] = ("A",),
                         residents: Sequence[tuple[str, str, str]] | None = None, visitor: bool = False,
                         attorney: bool = False, **config: Any) -> FacilityWorld:
    """Every unit gets `kiosk_count`, the same weekly `windows` (default: all day, every day) and one
    kiosk device. `residents` are (booking_number, full_name, unit name); default one resident "R-1"
    in the first unit. `config` is any other facility setting (min_lead_minutes, billing_mode, ...).
    Lead time defaults to 0 and the horizon to 30 days so that tests can book right away."""
    operator = operator or await api.operator()
    body = {"name": name or f"Facility {next(_names)}", "timezone": timezone, "min_lead_minutes": 0,
            "booking_horizon_days": 30, **config}
    facility = (await operator.post("/v1/facilities", body)).ok(201)
    fid = facility["id"]
    admin = await api.create_user(Role.ADMIN, facility_id=fid)
    officer = await api.create_user(Role.OFFICER, facility_id=fid)
    investigator = await api.create_user(Role.INVESTIGATOR, facility_id=fid)
    unit_ids: dict[str, str] = {}
    kiosk_ids: dict[str, tuple[str, str]] = {}
    kiosks: dict[str, As] = {}
    for unit_name in units:
        unit = (await admin.post(f"/v1/facilities/{fid}/housing-units",
                                 {"name": unit_name, "kiosk_count": kiosk_count})).ok(201)
        unit_ids[unit_name] = unit["id"]
        (await admin.put(f"/v1/facilities/{fid}/housing-units/{unit['id']}/windows",
                         {"windows": windows if windows is not None else ALL_DAY})).ok()
        kiosk = (await admin.post(f"/v1/facilities/{fid}/kiosks",
                                  {"housing_unit_id": unit["id"], "name": f"Kiosk {unit_name}"})).ok(201)
        kiosk_ids[unit_name] = (kiosk["id"], kiosk["secret"])
        token = (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk["id"],
                                                             "secret": kiosk["secret"]})).ok()
        kiosks[unit_name] = api.track(As(api, token["access_token"], kiosk["id"]))
    (await admin.put(f"/v1/facilities/{fid}/session-options", {"options": options or DEFAULT_OPTIONS})).ok()
    if fees:
        (await operator.put(f"/v1/facilities/{fid}/fees", {"fees": fees})).ok()
    resident_ids: dict[str, str] = {}
    for number, full_name, unit_name in residents if residents is not None else [("R-1", "Resident One", units[0])]:
        resident = (await admin.post(f"/v1/facilities/{fid}/residents", {
            "booking_number": number, "full_name": full_name, "housing_unit_id": unit_ids[unit_name]})).ok(201)
        resident_ids[number] = resident["id"]
    first = units[0]
    world = FacilityWorld(facility_id=fid, unit_id=unit_ids[first], resident_id=next(iter(resident_ids.values()), ""),
                          kiosk_id=kiosk_ids[first][0], kiosk_secret=kiosk_ids[first][1], operator=operator,
                          admin=admin, officer=officer, investigator=investigator, kiosk=kiosks[first],
                          facility=facility, unit_ids=unit_ids, resident_ids=resident_ids, kiosks=kiosks)
    if visitor:
        world.visitor = await world.approved_visitor(api)
    if attorney:
        world.attorney = await world.approved_visitor(api, "attorney")
    return world
