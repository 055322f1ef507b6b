"""The kiosk's side of a visit: notices for its residents (B7) and check-in (S6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import KioskNotification, Resident
from control_api.problems import not_found
from control_api.routes.common import get_or_404
from control_api.routes.visits.views import VisitOut, resident_name, visible_visit, visit_out
from control_api.services import booking

routes = ApiRoutes()


class NotificationOut(BaseModel):
    id: str
    visit_id: str
    resident_id: str
    resident_name: str | None
    kind: str
    message: str
    created_at: datetime
    acknowledged_at: datetime | None


@routes.get("/v1/kiosk/notifications", summary="Notices for this kiosk's residents", roles={Role.KIOSK},
            tags=("kiosk",), response=list[NotificationOut])
async def kiosk_notifications(req: ApiRequest[Any, Any]) -> list[NotificationOut]:
    rows = await req.session.execute(
        select(KioskNotification, Resident.full_name).join(Resident, Resident.id == KioskNotification.resident_id)
        .where(KioskNotification.housing_unit_id == req.principal.housing_unit_id)
        .order_by(KioskNotification.acknowledged_at.is_not(None), KioskNotification.created_at.desc()).limit(200))
    return [NotificationOut(id=n.id, visit_id=n.visit_id, resident_id=n.resident_id, resident_name=name, kind=n.kind,
                            message=n.message, created_at=n.created_at, acknowledged_at=n.acknowledged_at)
            for n, name in rows.all()]


@routes.post("/v1/kiosk/notifications/{notification_id}/ack", summary="Mark a kiosk notice as seen",
             roles={Role.KIOSK}, tags=("kiosk",), response=NotificationOut)
async def ack_notification(req: ApiRequest[Any, Any]) -> NotificationOut:
    note = await get_or_404(req.session, KioskNotification, req.path("notification_id"), "notification")
    if note.housing_unit_id != req.principal.housing_unit_id:
        raise not_found("notification")
    if note.acknowledged_at is None:
        note.acknowledged_at = req.now
    return NotificationOut(id=note.id, visit_id=note.visit_id, resident_id=note.resident_id,
                           resident_name=await resident_name(req, note.resident_id), kind=note.kind,
                           message=note.message, created_at=note.created_at, acknowledged_at=note.acknowledged_at)


@routes.post("/v1/visits/{visit_id}/check-in", summary="Check the resident in at the kiosk", roles={Role.KIOSK},
             tags=("kiosk",), response=VisitOut, errors=(409,))
async def check_in(req: ApiRequest[Any, Any]) -> VisitOut:
    """S6: the resident checks in at a kiosk of the visit's housing unit, lobby opening to end."""
    visit = await visible_visit(req, req.path("visit_id"), lock=True)
    booking.check_in(visit, now=req.now, lobby_minutes=req.ctx.settings.lobby_minutes)
    return await visit_out(req, visit)
