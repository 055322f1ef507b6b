"""Periodic work that time alone triggers: expiring credits, closing finished visits, flagging
overdue credit requests. The server runs these every `sweep_interval_seconds`, and right after
the test clock moves, so that advancing time has its effects at once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext

log = logging.getLogger(__name__)

Sweep = Callable[[AsyncSession, datetime, AppContext], Awaitable[int]]
_SWEEPS: dict[str, Sweep] = {}


def sweep(name: str) -> Callable[[Sweep], Sweep]:
    """Register a sweep. Each runs in its own transaction and must be idempotent."""

    def register(fn: Sweep) -> Sweep:
        _SWEEPS[name] = fn
        return fn

    return register


async def run_sweeps(ctx: AppContext) -> dict[str, int]:
    """Run every registered sweep once; returns how many things each changed."""
    import control_api.services.registry  # noqa: F401  (imports the modules that register sweeps)

    results: dict[str, int] = {}
    for name, fn in _SWEEPS.items():
        async with ctx.sessions() as session, session.begin():
            results[name] = await fn(session, ctx.clock.now(), ctx)
    return results
