"""The two seams the media plane uses: join tokens for participants (S1) and event reports (S6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator
from sqlalchemy import select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Visit
from control_api.domain.join_window import JoinWindow, Position
from control_api.problems import conflict, not_found
from control_api.routes.common import Id, Instant, Strict
from control_api.services import media_sessions, visit_access
from control_api.services.ice_servers import ice_servers_for
from control_api.services.visit_outcomes import record_event
from openvisit.keys import public_pem

routes = ApiRoutes()
TAGS = ("media",)


class IceServerOut(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class JoinVisit(BaseModel):
    id: str
    starts_at: datetime
    ends_at: datetime
    visit_type: str


class JoinOut(BaseModel):
    join_token: str
    expires_at: datetime
    signaling_url: str | None
    ice_servers: list[IceServerOut]
    participant_role: str
    visit: JoinVisit


@routes.post("/v1/visits/{visit_id}/join", summary="Get a join token for a visit",
             roles={Role.VISITOR, Role.ATTORNEY, Role.KIOSK}, tags=TAGS, response=JoinOut, errors=(409,))
async def join(req: ApiRequest[Any, Any]) -> JoinOut:
    """S1: only the visit's participants, only from the lobby opening until the scheduled end.
    The token is signed with Ed25519; media nodes verify it with the public key only."""
    p = req.principal
    visit = await visit_access.visible_visit(req.session, p, req.path("visit_id"),
                                             refusal="this kiosk is not in the visit's housing unit")
    if p.role is Role.KIOSK:
        participant_id, participant_role = visit.resident_id, "resident"
    else:
        participant_id, participant_role = p.id, p.role.value
    if visit.status not in ("scheduled", "in_progress"):
        raise conflict(f"a {visit.status} visit cannot be joined", slug="not-joinable")
    now = req.now
    window = JoinWindow.of(visit.starts_at, visit.ends_at, req.ctx.settings.lobby_minutes)
    opens = window.opens_at
    position = window.position(now)
    if position is Position.BEFORE:
        raise conflict(f"joining opens at {opens.isoformat()}, {req.ctx.settings.lobby_minutes} minutes before the "
                       "start (rule S1)", slug="outside-join-window", opens_at=opens.isoformat())
    if position is Position.AFTER:
        raise conflict(f"the visit ended at {visit.ends_at.isoformat()} (rule S2)", slug="outside-join-window")
    if p.role is Role.KIOSK and visit.resident_checked_in_at is None:
        raise conflict("check the resident in at the kiosk first (rule S6)", slug="not-checked-in")
    expires = min(now + timedelta(seconds=req.ctx.settings.join_token_seconds), visit.ends_at)
    token, _claims = req.ctx.join_tokens.issue(
        visit_id=visit.id, participant_id=participant_id, participant_role=participant_role,
        visit_type=visit.visit_type, visit_starts_at=visit.starts_at, visit_ends_at=visit.ends_at,
        not_before=opens, expires_at=expires)
    servers = [IceServerOut(**s.model_dump()) for s in ice_servers_for(
        req.ctx.settings, participant_id=participant_id, valid_until=visit.ends_at, now=now)]
    return JoinOut(join_token=token, expires_at=expires, signaling_url=signaling_url_for(req),
                   ice_servers=servers, participant_role=participant_role,
                   visit=JoinVisit(id=visit.id, starts_at=visit.starts_at, ends_at=visit.ends_at,
                                   visit_type=visit.visit_type))


def signaling_url_for(req: ApiRequest[Any, Any]) -> str | None:
    signaling_url = req.ctx.settings.signaling_url
    if signaling_url is None and req.ctx.media is not None:  # the embedded media plane, on this server
        scheme = "wss" if req.request.scheme == "https" else "ws"
        signaling_url = f"{scheme}://{req.request.host}/v1/signaling"
    return signaling_url


class DisconnectIn(Strict):
    reason: Literal["conduct", "facility", "technical"] = Field(description="rule S4")
    note: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None


class DisconnectOut(BaseModel):
    visit_id: str
    reason: str
    disconnected: bool


@routes.post("/v1/visits/{visit_id}/disconnect", summary="Disconnect a live visit at once",
             roles={Role.OFFICER, Role.ADMIN}, tags=TAGS, body=DisconnectIn, response=DisconnectOut, errors=(409,),
             own_transactions=True)
async def disconnect(req: ApiRequest[DisconnectIn, Any]) -> DisconnectOut:
    """S4: an officer of the visit's facility ends it at once; both parties see the reason. The
    media plane reports the end, which sets the visit `disconnected` (no credit for conduct or
    facility reasons, M4)."""
    visit = await visit_access.visible_visit(req.session, req.principal, req.path("visit_id"),
                                             refusal=visit_access.ANOTHER_FACILITY)
    if visit.status not in ("scheduled", "in_progress"):
        raise conflict(f"a {visit.status} visit is not live", slug="not-live")
    media = req.ctx.media
    if media is None or not await media.disconnect(visit.id, req.body.reason, req.body.note):
        raise conflict("the visit has no live session on the media plane", slug="not-live")
    return DisconnectOut(visit_id=visit.id, reason=req.body.reason, disconnected=True)


class PublicKeyOut(BaseModel):
    algorithm: Literal["EdDSA"] = "EdDSA"
    public_key_pem: str


@routes.get("/v1/media/public-key", summary="The key media nodes verify join tokens with", roles=PUBLIC,
            tags=TAGS, response=PublicKeyOut)
async def public_key(req: ApiRequest[Any, Any]) -> PublicKeyOut:
    return PublicKeyOut(public_key_pem=public_pem(req.ctx.join_tokens.public_key))


EventId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_\-:.]{1,100}$")]


class MediaEvent(Strict):
    event_id: EventId = Field(description="unique per event; a repeated id is acknowledged and ignored")
    visit_id: Id
    kind: Literal["participant_joined", "participant_left", "started", "ended", "monitor_joined", "monitor_left",
                  "privilege_refused", "join_refused", "recording_closed", "recording_failed"]
    participant: Literal["visitor", "resident"] | None = None
    actor: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = Field(
        default=None, description="monitor events: the officer; privilege_refused: who was refused")
    manifest: dict[str, Any] | None = Field(default=None, description="recording_closed: the recorder's manifest "
                                            "(files, sizes, SHA-256); the control plane re-hashes and signs it")
    occurred_at: Instant
    reason: Literal["completed", "disconnected", "failed"] | None = Field(default=None, description="for ended")
    disconnect_reason: Literal["conduct", "facility", "technical"] | None = Field(default=None, description="S4")
    connected_seconds: int | None = Field(default=None, ge=0, le=24 * 3600, description="for ended")
    detail: Annotated[str, StringConstraints(max_length=500)] | None = None
    source: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="join_refused: the client's address at the media node")
    verified: bool | None = Field(default=None, description="join_refused: false when the actor is only claimed "
                                  "(an unverifiable token), true when a valid signature proved it")
    session_id: EventId | None = Field(default=None, description="the room session on the node that saw it")
    node_id: EventId | None = Field(default=None, description="the media node that reported it")

    @model_validator(mode="after")
    def _shape(self) -> MediaEvent:
        if self.kind.startswith("participant_") and self.participant is None:
            raise ValueError("participant events name the participant")
        if self.kind == "ended" and self.reason is None:
            raise ValueError("an ended event gives its reason")
        if self.kind in ("monitor_joined", "monitor_left", "privilege_refused", "join_refused") and self.actor is None:
            raise ValueError("monitor and refusal events name the actor")
        if self.kind == "recording_closed" and self.manifest is None:
            raise ValueError("a recording_closed event carries the manifest")
        if self.reason == "disconnected" and self.disconnect_reason is None:
            raise ValueError("a disconnect gives the officer's reason: conduct, facility or technical (rule S4)")
        return self


class MediaEventAck(BaseModel):
    accepted: bool
    duplicate: bool
    visit_status: str


@routes.post("/v1/internal/media-events", summary="Report a visit event from the media plane", roles={Role.MEDIA},
             tags=TAGS, body=MediaEvent, response=MediaEventAck,
             description="For media nodes only: authenticated with `Authorization: Bearer <media secret>` "
                         "(compared in constant time), not with a user's access token; anything else is 401. "
                         "`event_id` makes reports idempotent: a repeated id answers `duplicate: true` and "
                         "changes nothing. Reports about a visit that is no longer live (ended, cancelled) "
                         "are stored and change nothing. An `ended` report decides the final status (S6) "
                         "and settles the money (M4, M6, M8). Monitor joins and leaves and refused attempts on a "
                         "privileged visit (P1) are written to the audit log.")
async def media_event(req: ApiRequest[MediaEvent, Any]) -> MediaEventAck:
    b = req.body
    visit = (await req.session.scalars(select(Visit).where(Visit.id == b.visit_id).with_for_update())).one_or_none()
    if visit is None:
        raise not_found("visit")
    data = {"reason": b.reason, "disconnect_reason": b.disconnect_reason, "connected_seconds": b.connected_seconds,
            "detail": b.detail, "actor": b.actor, "manifest": b.manifest, "source": b.source, "verified": b.verified}
    fresh = await record_event(req.session, req.ctx, visit=visit, event_id=b.event_id, kind=b.kind,
                               participant=b.participant, occurred_at=b.occurred_at,
                               data={k: v for k, v in data.items() if v is not None}, now=req.now,
                               session_id=b.session_id, node_id=b.node_id)
    return MediaEventAck(accepted=True, duplicate=not fresh, visit_status=visit.status)


class SessionIn(Strict):
    session_id: EventId
    visit_id: Id
    connected_seconds: int = Field(ge=0, le=24 * 3600, description="both present with media flowing, so far")
    participants: list[Literal["visitor", "resident"]] = Field(default_factory=list, max_length=2)


class HeartbeatIn(Strict):
    node_id: EventId = Field(description="the node's id for this process start")
    started_at: Instant
    sessions: list[SessionIn] = Field(default_factory=list, max_length=10000)


class HeartbeatOut(BaseModel):
    now: datetime = Field(description="the control plane's clock (nodes follow it when it is movable)")
    clock_movable: bool
    lease_seconds: float
    interval_seconds: float


@routes.post("/v1/internal/media-heartbeat", summary="Renew a media node's lease and report its rooms",
             roles={Role.MEDIA}, tags=TAGS, body=HeartbeatIn, response=HeartbeatOut,
             description="For media nodes only (media secret). Sent every `media_heartbeat_seconds`; a node "
                         "silent for `media_lease_seconds` is taken for gone and its live visits are interrupted: "
                         "joinable until their end (S5), `failed` and credited if they never resume (S6, M6). "
                         "Each session's connected seconds (both parties' media flowing) is kept, so a crash "
                         "loses at most one interval of it (M8).")
async def media_heartbeat(req: ApiRequest[HeartbeatIn, Any]) -> HeartbeatOut:
    b = req.body
    if req.ctx.media_leases is not None:
        # Before any database work: the node is alive even if its heartbeat cannot be written
        # (a database outage must not make every node look gone once it ends).
        req.ctx.media_leases.heard(b.node_id)
    await media_sessions.record_heartbeat(
        req.session, node_id=b.node_id, started_at=b.started_at, now=req.now,
        sessions=[media_sessions.SessionReport(s.session_id, s.visit_id, s.connected_seconds) for s in b.sessions])
    return HeartbeatOut(**media_sessions.heartbeat_answer(req.ctx))
