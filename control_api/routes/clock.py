"""The test clock: in demo and test mode an operator moves time forward (never back)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import ClockState
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
    """Then runs every sweep, so expiries and deadlines take effect at once."""
    clock = req.ctx.clock
    if not clock.movable:
        raise ProblemError(409, "clock-locked", "the clock only moves in demo or test mode")
    new_offset = clock.offset + timedelta(seconds=req.body.seconds)
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

