"""Investigator review (R3) and retention controls (R4): search a facility's recordings, play a
visit (both parties, seekable: HTTP range requests), flag moments, export a verifiable archive,
place or lift a legal hold. Every view, flag, export and hold is written to the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import HousingUnit, Recording, RecordingFile, RecordingFlag, Resident, User, Visit
from control_api.problems import ProblemError, not_found
from control_api.routes.common import Instant, Strict
from control_api.services import audit
from control_api.services.recordings import check_playback_token, playback_token, segments_of, storage
from openvisit.export_archive import build_archive

routes = ApiRoutes()
TAGS = ("recordings",)
REVIEWERS = {Role.INVESTIGATOR, Role.OPERATOR}
HOLDERS = {Role.INVESTIGATOR, Role.ADMIN, Role.OPERATOR}


class RecordingSearch(BaseModel):
    resident_id: str | None = None
    visitor_id: str | None = None
    housing_unit_id: str | None = None
    started_from: Instant | None = Field(default=None, alias="from")
    started_to: Instant | None = Field(default=None, alias="to")


class RecordingSummary(BaseModel):
    visit_id: str
    started_at: datetime
    ended_at: datetime
    resident_id: str
    resident_name: str
    visitor_id: str
    visitor_name: str
    housing_unit: str
    legal_hold: bool
    segments: int = 1
    incomplete: bool = Field(default=False, description="R1: a write error, a refusal for lack of disk space or a "
                                                        "crash left this recording incomplete (see `problems`)")


@routes.get("/v1/facilities/{facility_id}/recordings", summary="Search recorded visits",
            roles=REVIEWERS, tags=TAGS, query=RecordingSearch, response=list[RecordingSummary])
async def search(req: ApiRequest[Any, RecordingSearch]) -> list[RecordingSummary]:
    facility_id = req.path("facility_id")
    req.require_facility(facility_id)
    q = req.query
    stmt = (select(Recording, Resident.full_name, User.legal_name, HousingUnit.name, Visit.recording_problems)
            .join(Resident, Resident.id == Recording.resident_id).join(User, User.id == Recording.booker_id)
            .join(HousingUnit, HousingUnit.id == Recording.housing_unit_id).join(Visit, Visit.id == Recording.visit_id)
            .where(Recording.facility_id == facility_id, Recording.deleted_at.is_(None)))
    if q.resident_id:
        stmt = stmt.where(Recording.resident_id == q.resident_id)
    if q.visitor_id:
        stmt = stmt.where(Recording.booker_id == q.visitor_id)
    if q.housing_unit_id:
        stmt = stmt.where(Recording.housing_unit_id == q.housing_unit_id)
    if q.started_from:
        stmt = stmt.where(Recording.started_at >= q.started_from)
    if q.started_to:
        stmt = stmt.where(Recording.started_at < q.started_to)
    rows = (await req.session.execute(stmt.order_by(Recording.started_at.desc()).limit(500))).all()
    return [RecordingSummary(visit_id=r.visit_id, started_at=r.started_at, ended_at=r.ended_at,
                             resident_id=r.resident_id, resident_name=resident, visitor_id=r.booker_id,
                             visitor_name=visitor, housing_unit=unit, legal_hold=r.legal_hold,
                             segments=len(segments_of(r)), incomplete=_incomplete(r, problems))
            for r, resident, visitor, unit, problems in rows]


def _incomplete(recording: Recording, problems: list[dict[str, Any]] | None) -> bool:
    document = recording.signed_manifest["document"]
    return bool(problems) or document.get("complete") is False or bool(document.get("truncated"))


class FileOut(BaseModel):
    name: str
    party: str
    media_type: str
    size_bytes: int
    sha256: str
    url: str  # playback link with a short-lived token (a <video> element cannot send headers)
    segment: int = 1  # R1: the segment (1, 2, ... in time order) this file belongs to
    segment_started_at: datetime | None = None  # the file's media times count from here
    truncated: bool = False  # ended early (write error, crash); recovered: a crash left it
    recovered: bool = False
    damaged: bool = False  # could not be remuxed: kept as it was (download only)


class FlagOut(BaseModel):
    id: str
    at_seconds: float
    note: str
    author_id: str
    created_at: datetime


class RecordingDetail(BaseModel):
    visit_id: str
    started_at: datetime
    ended_at: datetime
    legal_hold: bool
    legal_hold_reason: str | None
    files: list[FileOut]
    flags: list[FlagOut]
    signed_manifest: dict[str, Any]
    segments: int = 1
    incomplete: bool = False
    problems: list[dict[str, Any]] = Field(default_factory=list, description="R1: why the recording is incomplete")


async def _recording(req: ApiRequest[Any, Any], *, lock: bool = False) -> Recording:
    stmt = select(Recording).where(Recording.visit_id == req.path("visit_id"))
    recording = (await req.session.scalars(stmt.with_for_update() if lock else stmt)).one_or_none()
    if recording is None or recording.deleted_at is not None:
        raise not_found("recording")
    req.require_facility(recording.facility_id)
    return recording


@routes.get("/v1/recordings/{visit_id}", summary="Open a recorded visit for review", roles=REVIEWERS, tags=TAGS,
            response=RecordingDetail, own_transactions=True)
async def open_recording(req: ApiRequest[Any, Any]) -> RecordingDetail:
    """The files (with playback links), flags and signed manifest. Audited as a view (R3)."""
    recording = await _recording(req)
    files = (await req.session.scalars(select(RecordingFile).where(RecordingFile.visit_id == recording.visit_id)
                                       .order_by(RecordingFile.name))).all()
    listed = {f["name"]: f for f in recording.signed_manifest["document"].get("files", [])}
    order = {name: i for i, name in enumerate(listed)}
    files = sorted(files, key=lambda f: (order.get(f.name, len(order)), f.name))  # segment order (R1)
    visit = await req.session.get(Visit, recording.visit_id)
    problems = (visit.recording_problems if visit is not None else None) or []
    flags = (await req.session.scalars(select(RecordingFlag).where(RecordingFlag.visit_id == recording.visit_id)
                                       .order_by(RecordingFlag.at_seconds))).all()
    async with req.ctx.sessions() as session, session.begin():
        await audit.append(session, now=req.now, action="recording.view", actor=req.principal,
                           facility_id=recording.facility_id, visit_id=recording.visit_id)
    viewer = req.principal.id
    return RecordingDetail(
        visit_id=recording.visit_id, started_at=recording.started_at, ended_at=recording.ended_at,
        legal_hold=recording.legal_hold, legal_hold_reason=recording.legal_hold_reason,
        files=[FileOut(name=f.name, party=f.party, media_type=f.media_type, size_bytes=f.size_bytes, sha256=f.sha256,
                       url=f"/v1/recordings/{recording.visit_id}/files/{f.name}?access="
                           f"{playback_token(req.ctx, recording.visit_id, f.name, viewer, req.now)}",
                       segment=listed.get(f.name, {}).get("segment", 1),
                       segment_started_at=listed.get(f.name, {}).get("segment_started_at"),
                       truncated=bool(listed.get(f.name, {}).get("truncated")),
                       recovered=bool(listed.get(f.name, {}).get("recovered")),
                       damaged=bool(listed.get(f.name, {}).get("damaged")))
               for f in files],
        flags=[FlagOut(id=f.id, at_seconds=f.at_seconds, note=f.note, author_id=f.author_id, created_at=f.created_at)
               for f in flags],
        signed_manifest=recording.signed_manifest, segments=len(segments_of(recording)),
        incomplete=_incomplete(recording, problems), problems=problems)


class PlaybackQuery(BaseModel):
    access: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_\-.]{1,1000}$")] = Field(
        description="the playback token from the file's `url`")


@routes.get("/v1/recordings/{visit_id}/files/{name}", summary="Play a recording file (HTTP range requests)",
            roles=PUBLIC, tags=TAGS, query=PlaybackQuery, response_content_type="video/webm")
async def play_file(req: ApiRequest[Any, PlaybackQuery]) -> web.StreamResponse:
    """Authorised by the link's token (from `GET /v1/recordings/{visit_id}`), which names the
    viewer, the visit and the file and expires. Range requests make the video seekable."""
    visit_id, name = req.path("visit_id"), req.path("name")
    try:
        check_playback_token(req.ctx, req.query.access, visit_id, name, req.now)
    except ValueError as exc:
        raise ProblemError(403, "forbidden", f"not a valid playback link: {exc}") from exc
    recording = await req.session.get(Recording, visit_id)
    known = await req.session.scalar(select(RecordingFile.id).where(RecordingFile.visit_id == visit_id,
                                                                    RecordingFile.name == name))
    if recording is None or recording.deleted_at is not None or known is None:
        raise not_found("recording file")
    path = storage(req.ctx).path(visit_id, name)
    if not path.is_file():
        raise not_found("recording file")
    return web.FileResponse(path, headers={"Content-Type": "video/webm" if name.endswith(".webm")
                                           else "application/octet-stream", "Cache-Control": "private, no-store",
                                           "X-Content-Type-Options": "nosniff"})


class FlagIn(Strict):
    at_seconds: float = Field(ge=0, le=24 * 3600)
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


@routes.post("/v1/recordings/{visit_id}/flags", summary="Flag a moment with a note", roles={Role.INVESTIGATOR},
             tags=TAGS, body=FlagIn, response=FlagOut, status=201)
async def add_flag(req: ApiRequest[FlagIn, Any]) -> FlagOut:
    recording = await _recording(req)
    duration = (recording.ended_at - recording.started_at).total_seconds()
    if req.body.at_seconds > duration + 5:
        raise ProblemError(422, "outside-recording", f"the recording lasts {duration:.0f} s")
    flag = RecordingFlag(visit_id=recording.visit_id, at_seconds=req.body.at_seconds, note=req.body.note,
                         author_id=req.principal.id, created_at=req.now)
    req.session.add(flag)
    await req.session.flush()
    await audit.append(req.session, now=req.now, action="recording.flag", actor=req.principal,
                       facility_id=recording.facility_id, visit_id=recording.visit_id,
                       detail={"flag_id": flag.id, "at_seconds": flag.at_seconds, "note": flag.note})
    return FlagOut(id=flag.id, at_seconds=flag.at_seconds, note=flag.note, author_id=flag.author_id,
                   created_at=flag.created_at)


@routes.post("/v1/recordings/{visit_id}/export", summary="Export a visit as a verifiable archive",
             roles=REVIEWERS, tags=TAGS, response_content_type="application/zip")
async def export(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    """One ZIP: the files, the signed manifest, the visit's audit excerpt (this export included)
    and the server's public key. Check it anywhere with `openvisit export verify`."""
    recording = await _recording(req)
    await audit.append(req.session, now=req.now, action="recording.export", actor=req.principal,
                       facility_id=recording.facility_id, visit_id=recording.visit_id)
    files = (await req.session.scalars(select(RecordingFile).where(
        RecordingFile.visit_id == recording.visit_id))).all()
    store = storage(req.ctx)
    entries = [audit.as_json(e) for e in await audit.for_visit(req.session, recording.visit_id)]
    body = build_archive({f.name: store.path(recording.visit_id, f.name) for f in files},
                         recording.signed_manifest, entries, req.ctx.join_tokens.public_key)
    return web.Response(body=body, content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="visit-{recording.visit_id}.zip"', "Cache-Control": "no-store"})


class HoldIn(Strict):
    hold: bool
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None


class HoldOut(BaseModel):
    visit_id: str
    legal_hold: bool
    legal_hold_reason: str | None


@routes.put("/v1/recordings/{visit_id}/legal-hold", summary="Place or lift a legal hold (R4)", roles=HOLDERS,
            tags=TAGS, body=HoldIn, response=HoldOut)
async def legal_hold(req: ApiRequest[HoldIn, Any]) -> HoldOut:
    """A recording under legal hold outlives its retention period until the hold is lifted."""
    recording = await _recording(req, lock=True)
    if req.body.hold and not req.body.reason:
        raise ProblemError(422, "reason-required", "a legal hold needs its reason (case, order)")
    recording.legal_hold = req.body.hold
    recording.legal_hold_reason = req.body.reason if req.body.hold else None
    await audit.append(req.session, now=req.now, action="recording.hold" if req.body.hold else "recording.release",
                       actor=req.principal, facility_id=recording.facility_id, visit_id=recording.visit_id,
                       detail={"reason": req.body.reason})
    return HoldOut(visit_id=recording.visit_id, legal_hold=recording.legal_hold,
                   legal_hold_reason=recording.legal_hold_reason)
