"""A facility's kiosks: registration, enabling, secret rotation."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select, update

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import hash_password
from control_api.db.models import AuthSession, HousingUnit, Kiosk
from control_api.routes.common import Id, Strict, facility_for, get_or_404, same_facility
from control_api.routes.facilities.scope import ADMINS, STAFF_READ, TAGS

routes = ApiRoutes()


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
