"""KeyFrameRequestManager: asks a publisher for a keyframe (RTCP PLI), throttled, until one comes.

A consumer that joins late, overflows or reports loss cannot use delta frames until the next
keyframe. Browsers send keyframes rarely, so the SFU asks: at most one PLI per `min_interval`
per producer (so a room of consumers cannot flood the publisher), repeated until the keyframe
arrives (a PLI can be lost, too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

SendPli = Callable[[], Awaitable[None]]


class KeyFrameRequestManager:
    def __init__(self, send_pli: SendPli, *, min_interval: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._send_pli = send_pli
        self.min_interval = min_interval
        self._clock = clock
        self._last_sent = float("-inf")
        self._wanted = False
        self._task: asyncio.Task[None] | None = None
        self.plis_sent = 0

    @property
    def pending(self) -> bool:
        return self._wanted

    def request(self) -> None:
        """Someone needs a keyframe. Cheap to call on every dropped frame."""
        self._wanted = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def keyframe_received(self) -> None:
        self._wanted = False

    async def _run(self) -> None:
        while self._wanted:
            wait = self._last_sent + self.min_interval - self._clock()
            if wait <= 0:
                self._last_sent = self._clock()
                self.plis_sent += 1
                with contextlib.suppress(Exception):  # a failed PLI is simply repeated
                    await self._send_pli()
                wait = self.min_interval
            await asyncio.sleep(wait)

    async def close(self) -> None:
        self._wanted = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
