"""Visit events from the media plane, and the visit's final status and money (S6, M6, M8).

`record_event` is the one entry point for reports, whether they come over HTTP
(`/v1/internal/media-events`) or from the embedded media plane (`control_api.media_bridge`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import Visit, VisitEvent
from control_api.domain.outcomes import (
    LIVE,
    Attendance,
    Presence,
    Reported,
    both_present_seconds,
    credit_rule_for,
    final_status,
)
from control_api.services import audit, billing, media_sessions
from control_api.services.sweeps import sweep

EventKind = Literal["participant_joined", "participant_left", "started", "ended", "monitor_joined", "monitor_left",
                    "privilege_refused", "join_refused", "recording_closed", "recording_failed"]
AUDITED = {"monitor_joined": "monitor.join", "monitor_left": "monitor.leave",
           "privilege_refused": "privilege.refused", "join_refused": "media.join_refused"}

# The media plane ends a visit at its scheduled end and reports it within moments (with retries).
# The sweep waits this long past the end before deciding without that report, so the media
# plane's own measure of connected time wins whenever it arrives.
END_REPORT_GRACE = timedelta(seconds=60)
# A node that still holds a visit reports its end itself (its outbox keeps the report until the
# control plane takes it); the sweep waits for it, but not forever.
LIVE_NODE_PATIENCE = timedelta(minutes=10)
SESSION_KINDS = frozenset({"participant_joined", "participant_left", "started", "ended"})


async def record_event(session: AsyncSession, app: AppContext, *, visit: Visit, event_id: str, kind: EventKind,
                       participant: str | None, occurred_at: datetime, data: dict[str, Any],
                       now: datetime, session_id: str | None = None, node_id: str | None = None) -> bool:
    """Store one report and apply it. Returns False when this event id was seen before (no-op).

    The caller holds the visit row locked (SELECT ... FOR UPDATE). Reports about a visit that is
    no longer live (ended, cancelled, ...) are kept for the record and change nothing."""
    seen = await session.scalar(select(VisitEvent.id).where(VisitEvent.event_id == event_id))
    if seen is not None:
        return False
    try:  # a delivery of the same id racing this one (an outbox retry, two paths): the unique key decides
        async with session.begin_nested():
            session.add(VisitEvent(event_id=event_id, visit_id=visit.id, kind=kind, participant=participant,
                                   data=data, occurred_at=occurred_at, received_at=now))
    except IntegrityError:
        return False  # the other one committed first: applied once, this one is the duplicate
    if kind == "recording_closed":
        from control_api.services.recordings import accept_manifest

        manifest = data.get("manifest")
        if isinstance(manifest, dict):
            await accept_manifest(session, app, visit, manifest, now)
        return True
    if kind == "recording_failed":  # R1: audited, and the recording marked incomplete for staff
        from control_api.services.recordings import recording_failed

        await recording_failed(session, visit, detail=data.get("detail"), occurred_at=occurred_at, now=now)
        return True
    if kind in AUDITED:  # what the media plane saw of monitors and refusals goes to the audit log
        actor = str(data.get("actor") or "")
        unverified = kind == "join_refused" and data.get("verified") is not True
        extra: dict[str, Any] = {"refused": data.get("detail")} if kind.endswith("_refused") else {}
        if kind == "join_refused":  # an attempt: where it came from; a claimed identity is never an actor
            extra |= {"client_address": data.get("source"), "identity_verified": not unverified}
            if unverified:
                extra["claimed_identity"] = actor
        await audit.append(session, now=now, action=AUDITED[kind],
                           actor_id=None if unverified else actor.removeprefix("monitor-"),
                           actor_role="officer" if kind.startswith("monitor_") else None,
                           facility_id=visit.facility_id, visit_id=visit.id,
                           detail={"source": "media-plane", "occurred_at": occurred_at.isoformat(),
                                   "visit_type": visit.visit_type, **extra})
        return True
    if visit.status not in LIVE:
        return True
    if session_id is not None and kind in SESSION_KINDS:
        seconds = data.get("connected_seconds")
        await media_sessions.note_session_event(session, visit=visit, session_id=session_id, node_id=node_id,
                                                kind=kind, connected_seconds=None if seconds is None else int(seconds),
                                                now=now, watcher=app.media_leases)
    if kind == "participant_joined":
        if participant == "visitor" and visit.visitor_joined_at is None:
            visit.visitor_joined_at = occurred_at
        if participant == "resident" and visit.resident_joined_at is None:
            visit.resident_joined_at = occurred_at
    elif kind == "started":
        visit.status = "in_progress"
        visit.media_started_at = visit.media_started_at or occurred_at
    elif kind == "ended":
        reported: Reported = data.get("reason") or "completed"
        seconds = data.get("connected_seconds")
        await finish(session, app, visit, reported=reported, disconnect_reason=data.get("disconnect_reason"),
                     connected_seconds=None if seconds is None else int(seconds), ended_at=occurred_at,
                     detail=data.get("detail"), now=now)
    visit.updated_at = now
    return True


async def connected_seconds_from_events(session: AsyncSession, visit: Visit) -> int:
    """Both-present time inside the visit, from the join and leave reports (S5 gaps excluded)."""
    rows = (await session.execute(select(VisitEvent.occurred_at, VisitEvent.kind, VisitEvent.participant).where(
        VisitEvent.visit_id == visit.id, VisitEvent.kind.in_(("participant_joined", "participant_left")))
        .order_by(VisitEvent.occurred_at, VisitEvent.received_at))).all()
    return both_present_seconds([Presence(at, kind, who or "") for at, kind, who in rows],
                                visit.starts_at, visit.ends_at)


async def finish(session: AsyncSession, app: AppContext, visit: Visit, *,
                 reported: Reported | None, disconnect_reason: str | None,
                 connected_seconds: int | None, ended_at: datetime, detail: str | None, now: datetime) -> None:
    """Decide the final status (S6) and settle the money: M6 credit for a failure, otherwise
    per-minute settlement (M8) for per-minute facilities. Conduct and facility disconnects get
    no credit (M4). Connected time is the sum over the visit's media sessions (each kept current
    by heartbeats, so a crashed node's share survives it); without sessions, the reported
    `connected_seconds`, or (None) what the join/leave reports show."""
    inputs = await media_sessions.outcome_inputs(session, visit)
    if inputs.connected_seconds is not None:
        connected_seconds = inputs.connected_seconds
    elif connected_seconds is None:
        connected_seconds = await connected_seconds_from_events(session, visit)
    connected = max(0, min(connected_seconds, visit.length_minutes * 60))
    attendance = Attendance(visitor_joined=visit.visitor_joined_at is not None,
                            resident_joined=visit.resident_joined_at is not None,
                            media_flowed=visit.media_started_at is not None or connected > 0)
    status = final_status(attendance, reported, interrupted=inputs.interrupted)
    if inputs.interrupted and status == "failed" and reported != "failed":
        detail = "the media connection was lost on our side and the visit did not resume"
    visit.status = status
    visit.ended_at = ended_at
    visit.connected_seconds = connected
    visit.disconnect_reason = disconnect_reason if status == "disconnected" else None
    visit.ended_reason = detail or {"completed": "the visit reached its scheduled end",
                                    "disconnected": f"disconnected by an officer ({disconnect_reason})",
                                    "failed": "a system fault ended the visit",
                                    "no_show_visitor": "the visitor did not join",
                                    "no_show_resident": "the resident did not join"}[status]
    visit.updated_at = now
    rule = credit_rule_for(status, visit.disconnect_reason)
    if rule is not None:
        await billing.credit_visit(session, app, visit=visit, rule=rule, now=now,
                                   description="Automatic credit: the visit failed because of a system fault (M6)")
    elif visit.billing_mode == "per_minute":
        await billing.settle_per_minute(session, app, visit=visit, connected_seconds=connected, now=now)
    if status == "disconnected" and visit.disconnect_reason == "technical":
        from control_api.services.credit_requests import open_on_behalf

        await open_on_behalf(session, app, visit=visit, now=now,
                             description="Opened on your behalf: an officer ended the visit for a technical reason "
                                         "on the facility's side (rules S4, M6).")


@sweep("close_finished_visits")
async def close_finished_visits(session: AsyncSession, now: datetime, ctx: AppContext) -> int:
    """Visits whose end passed (plus the grace) without an `ended` report: decide from the joins
    and leaves we saw (S6). Idempotent: a closed visit is no longer live, so it is never picked again."""
    visits = (await session.scalars(select(Visit).where(
        Visit.status.in_(tuple(LIVE)), Visit.ends_at <= now - END_REPORT_GRACE)
        .order_by(Visit.ends_at, Visit.id).with_for_update())).all()
    closed = 0
    for visit in visits:
        if visit.ends_at > now - END_REPORT_GRACE - LIVE_NODE_PATIENCE and \
                await media_sessions.has_live_session_on_live_node(session, visit.id, ctx.media_leases):
            continue  # its node is alive and will report the end (S6: its measure wins)
        await finish(session, ctx, visit, reported=None, disconnect_reason=None, connected_seconds=None,
                     ended_at=visit.ends_at, detail=None, now=now)
        closed += 1
    return closed
