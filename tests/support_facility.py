"""Builds a complete facility through the real API, as an operator and the facility's admin would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from control_api.auth import Role
from tests.support import Api, As

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
ALL_DAY = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]


@dataclass
class FacilityWorld:
    facility_id: str
    unit_id: str
    resident_id: str
    kiosk_id: str
    kiosk_secret: str
    operator: As
    admin: As
    officer: As
    investigator: As
    kiosk: As
    facility: dict[str, Any] = field(default_factory=dict)

    async def approved_visitor(self, api: Api, role: str = "visitor") -> As:
        """Sign up, upload a photo ID, request access, and have the admin approve it (V1)."""
        visitor = await api.sign_up(role)
        (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
        request = (await visitor.post(f"/v1/facilities/{self.facility_id}/access-requests")).ok(201)
        (await self.admin.post(f"/v1/facilities/{self.facility_id}/access-requests/{request['id']}/decision",
                               {"decision": "approve"})).ok()
        if role == "attorney":
            ver = (await visitor.post(f"/v1/facilities/{self.facility_id}/bar-verifications")).ok(201)
            (await self.admin.post(f"/v1/facilities/{self.facility_id}/bar-verifications/{ver['id']}/decision",
                                   {"decision": "verify"})).ok()
        return visitor


async def build_facility(api: Api, *, operator: As | None = None, timezone: str = "America/Chicago",
                         kiosk_count: int = 1, windows: list[dict[str, Any]] | None = None,
                         options: list[dict[str, Any]] | None = None, **config: Any) -> FacilityWorld:
    operator = operator or await api.operator()
    body = {"name": f"Facility {id(config) % 100000}", "timezone": timezone, "min_lead_minutes": 0,
            "booking_horizon_days": 30, **config}
    facility = (await operator.post("/v1/facilities", body)).ok(201)
    fid = facility["id"]
    admin = await api.create_user(Role.ADMIN, facility_id=fid)
    officer = await api.create_user(Role.OFFICER, facility_id=fid)
    investigator = await api.create_user(Role.INVESTIGATOR, facility_id=fid)
    unit = (await admin.post(f"/v1/facilities/{fid}/housing-units", {"name": "A", "kiosk_count": kiosk_count})).ok(201)
    (await admin.put(f"/v1/facilities/{fid}/housing-units/{unit['id']}/windows",
                     {"windows": windows if windows is not None else ALL_DAY})).ok()
    (await admin.put(f"/v1/facilities/{fid}/session-options", {"options": options or [
        {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 20},
        {"visit_type": "social", "length_minutes": 20, "price_cents": 500, "per_minute_cents": 20},
        {"visit_type": "privileged", "length_minutes": 30, "price_cents": 0},
    ]})).ok()
    resident = (await admin.post(f"/v1/facilities/{fid}/residents", {
        "booking_number": "R-1", "full_name": "Resident One", "housing_unit_id": unit["id"]})).ok(201)
    kiosk = (await admin.post(f"/v1/facilities/{fid}/kiosks", {"housing_unit_id": unit["id"], "name": "K1"})).ok(201)
    token = (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk["id"], "secret": kiosk["secret"]})).ok()
    return FacilityWorld(facility_id=fid, unit_id=unit["id"], resident_id=resident["id"], kiosk_id=kiosk["id"],
                         kiosk_secret=kiosk["secret"], operator=operator, admin=admin, officer=officer,
                         investigator=investigator, kiosk=api.track(As(api, token["access_token"], kiosk["id"])),
                         facility=facility)
