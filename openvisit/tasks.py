"""Background loops (heartbeats, lease checks) stop the same way everywhere."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a background task and wait until it has really stopped, so nothing it does
    (a database write, a socket) outlives the component that owned it."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
