"""Visit events from the media plane, and the visit's final status and money (S6, M6, M8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import Visit, VisitEvent
from control_api.domain.outcomes import TERMINAL, Attendance, Reported, credit_rule_for, final_status
from control_api.services import billing
from control_api.services.sweeps import sweep

EventKind = Literal["participant_joined", "participant_left", "started", "ended"]


async def record_event(session: AsyncSession, app: AppContext, *, visit: Visit, event_id: str, kind: EventKind,
                       participant: str | None, occurred_at: datetime, data: dict[str, Any],
                       now: datetime) -> bool:
    """Store one report and apply it. Returns False when this event id was seen before (no-op)."""
    seen = await session.scalar(select(VisitEvent.id).where(VisitEvent.event_id == event_id))
    if seen is not None:
        return False
    session.add(VisitEvent(event_id=event_id, visit_id=visit.id, kind=kind, participant=participant, data=data,
                           occurred_at=occurred_at, received_at=now))
    await session.flush()
    if visit.status in TERMINAL:
        return True  # kept for the record, changes nothing
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
        await finish(session, app, visit, reported=reported, disconnect_reason=data.get("disconnect_reason"),
                     connected_seconds=int(data.get("connected_seconds") or 0), ended_at=occurred_at,
                     detail=data.get("detail"), now=now)
    visit.updated_at = now
    return True


async def finish(session: AsyncSession, app: AppContext, visit: Visit, *,
                 reported: Reported | None, disconnect_reason: str | None,
                 connected_seconds: int, ended_at: datetime, detail: str | None, now: datetime) -> None:
    attendance = Attendance(visitor_joined=visit.visitor_joined_at is not None,
                            resident_joined=visit.resident_joined_at is not None)
    status = final_status(attendance, reported)
    visit.status = status
    visit.ended_at = ended_at
    visit.connected_seconds = max(0, min(connected_seconds, visit.length_minutes * 60))
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
        await billing.settle_per_minute(session, app, visit=visit, connected_seconds=visit.connected_seconds,
                                        now=now)


@sweep("close_finished_visits")
async def close_finished_visits(session: AsyncSession, now: datetime, ctx: AppContext) -> int:
    """Visits whose end passed without an `ended` report: decide from the joins we saw."""
    visits = (await session.scalars(select(Visit).where(
        Visit.status.in_(("scheduled", "in_progress")), Visit.ends_at <= now).with_for_update())).all()
    for visit in visits:
        connected = 0
        if visit.visitor_joined_at and visit.resident_joined_at:
            both_from = max(visit.visitor_joined_at, visit.resident_joined_at, visit.starts_at)
            connected = max(0, int((visit.ends_at - both_from).total_seconds()))
        await finish(session, ctx, visit, reported=None, disconnect_reason=None, connected_seconds=connected,
                     ended_at=visit.ends_at, detail=None, now=now)
    return len(visits)
