"""Live monitoring for officers (S4, P1): the facility's live visits, and a monitor join token
for a social one. A privileged visit is listed as locked; asking to monitor it is refused and
audited here, and the media router refuses it again whatever token reaches it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import HousingUnit, Resident, User, Visit
from control_api.domain.join_window import JoinWindow, latest_start_open_at
from control_api.problems import ProblemError, conflict, forbidden
from control_api.routes.media import IceServerOut, JoinOut, JoinVisit, signaling_url_for
from control_api.services import audit, visit_access
from control_api.services.ice_servers import ice_servers_for

routes = ApiRoutes()
TAGS = ("monitoring",)
STAFF = {Role.OFFICER, Role.ADMIN, Role.INVESTIGATOR}


class LiveVisitOut(BaseModel):
    id: str
    visit_type: str
    locked: bool  # privileged: never monitored (P1)
    status: str
    starts_at: datetime
    ends_at: datetime
    resident_name: str
    housing_unit: str
    visitor_name: str
    on_media_server: bool


@routes.get("/v1/facilities/{facility_id}/live-visits", summary="Visits live now (officer console)",
            roles={Role.OFFICER, Role.ADMIN}, tags=TAGS, response=list[LiveVisitOut])
async def live_visits(req: ApiRequest[Any, Any]) -> list[LiveVisitOut]:
    """Visits whose join window is open now: from the lobby opening to the scheduled end."""
    facility_id = req.path("facility_id")
    req.require_facility(facility_id)
    now = req.now
    rows = (await req.session.execute(
        select(Visit, Resident.full_name, HousingUnit.name, User.legal_name)
        .join(Resident, Resident.id == Visit.resident_id).join(HousingUnit, HousingUnit.id == Visit.housing_unit_id)
        .join(User, User.id == Visit.booker_id)
        .where(Visit.facility_id == facility_id, Visit.status.in_(("scheduled", "in_progress")),
               Visit.starts_at <= latest_start_open_at(now, req.ctx.settings.lobby_minutes), Visit.ends_at > now)
        .order_by(Visit.starts_at, Visit.id))).all()
    media = req.ctx.media
    return [LiveVisitOut(id=v.id, visit_type=v.visit_type, locked=v.visit_type == "privileged", status=v.status,
                         starts_at=v.starts_at, ends_at=v.ends_at, resident_name=resident, housing_unit=unit,
                         visitor_name=visitor, on_media_server=media is not None and media.is_live(v.id))
            for v, resident, unit, visitor in rows]


@routes.post("/v1/visits/{visit_id}/monitor", summary="Get a monitor token for a live social visit",
             roles={*STAFF, Role.OPERATOR}, tags=TAGS, response=JoinOut, errors=(409,), own_transactions=True)
async def monitor(req: ApiRequest[Any, Any]) -> JoinOut:
    """Officers of the visit's facility watch a live social visit, hidden and receive-only. A
    privileged visit is refused to everyone, and every such attempt is written to the audit log
    (P1) before the refusal is sent."""
    visit = await visit_access.find_visit(req.session, req.path("visit_id"))
    p = req.principal
    if visit.visit_type == "privileged":
        async with req.ctx.sessions() as session, session.begin():  # committed even though we refuse
            await audit.append(session, now=req.now, action="privilege.refused", actor=p,
                               facility_id=visit.facility_id, visit_id=visit.id,
                               detail={"attempt": "monitor", "source": "control-api"})
        raise ProblemError(403, "privileged-visit", "a privileged visit is never monitored (rule P1); this attempt "
                                                   "was recorded in the audit log")
    visit_access.require_facility(p, visit.facility_id)
    if p.role is not Role.OFFICER:
        raise forbidden("only the facility's officers monitor live visits")
    now = req.now
    if visit.status not in ("scheduled", "in_progress") or not JoinWindow.of(
            visit.starts_at, visit.ends_at, req.ctx.settings.lobby_minutes).is_open(now):
        raise conflict("the visit is not live", slug="not-live")
    expires = min(now + timedelta(seconds=req.ctx.settings.join_token_seconds), visit.ends_at)
    token, _ = req.ctx.join_tokens.issue(
        visit_id=visit.id, participant_id=p.id, participant_role="monitor", visit_type=visit.visit_type,
        visit_starts_at=visit.starts_at, visit_ends_at=visit.ends_at, not_before=now - timedelta(seconds=5),
        expires_at=expires)
    async with req.ctx.sessions() as session, session.begin():
        await audit.append(session, now=now, action="monitor.authorized", actor=p, facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"token_expires_at": expires.isoformat()})
    return JoinOut(join_token=token, expires_at=expires, signaling_url=signaling_url_for(req),
                   ice_servers=[IceServerOut(**s.model_dump()) for s in ice_servers_for(
                       req.ctx.settings, participant_id=p.id, valid_until=visit.ends_at, now=now)],
                   participant_role="monitor",
                   visit=JoinVisit(id=visit.id, starts_at=visit.starts_at, ends_at=visit.ends_at,
                                   visit_type=visit.visit_type))
