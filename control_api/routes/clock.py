"""The test clock: in demo and test mode an operator moves time forward (never back).

Moving the clock does not sign anyone out (issue 13): every sign-in still open when the clock moves
has its expiry moved forward by the same amount, so time travel does not age sign-ins. Access
tokens still expire by the moved clock (they are short-lived and signed, not stored); the pages
renew them with the refresh token on the 401 (lib/session.js, call.js)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import AuthSession, ClockState
from control_api.problems import ProblemError

routes = ApiRoutes()
TAGS = ("test clock",)


class ClockOut(BaseModel):
    now: datetime
    offset_seconds: int
    movable: bool
    sweeps: dict[str, int] = Field(default_factory=dict)


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: int = Field(gt=0, le=5 * 366 * 24 * 3600, description="how far to move time forward")


@routes.get("/v1/test-clock", summary="Read the test clock", roles={Role.OPERATOR}, tags=TAGS, response=ClockOut)
async def read_clock(req: ApiRequest[Any, Any]) -> ClockOut:
    clock = req.ctx.clock
    return ClockOut(now=clock.now(), offset_seconds=int(clock.offset.total_seconds()), movable=clock.movable)


@routes.post("/v1/test-clock/advance", summary="Move the test clock forward", roles={Role.OPERATOR},
             tags=TAGS, body=Advance, response=ClockOut, errors=(409,))
async def advance_clock(req: ApiRequest[Advance, Any]) -> ClockOut:
    """Then runs every sweep, so expiries and deadlines take effect at once. Open sign-ins move
    forward with the clock: nobody is signed out by it."""
    clock = req.ctx.clock
    if not clock.movable:
        raise ProblemError(409, "clock-locked", "the clock only moves in demo or test mode")
    step = timedelta(seconds=req.body.seconds)
    new_offset = clock.offset + step
    before = clock.now()
    open_sessions = (await req.session.scalars(select(AuthSession).where(
        AuthSession.revoked_at.is_(None), AuthSession.expires_at > before))).all()
    for row in open_sessions:
        row.expires_at = row.expires_at + step
    state = await req.session.scalar(select(ClockState).where(ClockState.id == 1))
    if state is None:
        req.session.add(ClockState(id=1, offset_seconds=int(new_offset.total_seconds())))
    else:
        state.offset_seconds = int(new_offset.total_seconds())
    await req.session.flush()
    previous = clock.offset
    clock.set_offset(new_offset)

    async def restore() -> None:
        clock.set_offset(previous)

    async def sweep_now() -> None:
        from control_api.services.sweeps import run_sweeps

        await run_sweeps(req.ctx)

    req.on_rollback.append(restore)
    req.after_commit.append(sweep_now)
    return ClockOut(now=clock.now(), offset_seconds=int(new_offset.total_seconds()), movable=True)


@routes.post("/v1/test-clock/sweep", summary="Run time-triggered work now", roles={Role.OPERATOR},
             tags=TAGS, response=ClockOut, own_transactions=True)
async def run_sweeps_now(req: ApiRequest[Any, Any]) -> ClockOut:
    from control_api.services.sweeps import run_sweeps

    clock = req.ctx.clock
    results = await run_sweeps(req.ctx)
    return ClockOut(now=clock.now(), offset_seconds=int(clock.offset.total_seconds()), movable=clock.movable,
                    sweeps=results)

