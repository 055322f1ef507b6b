"""A media node's heartbeat: it renews the node's lease at the control plane and reports each live
room's session with its connected seconds, so that the control plane notices a dead node within
seconds and a crash loses at most one interval of connected time (S5, S6, M8).

The transport is one coroutine: over HTTP for a standalone node (`http_transport`), a direct call
for the media plane embedded in the control API (control_api/media_bridge.py). The answer carries
the control plane's clock; a node follows it when it is movable (demo and test mode), so a
standalone node's rooms end when the control plane's visits do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp

from openvisit.tasks import cancel_and_wait

log = logging.getLogger(__name__)
Transport = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class FollowingClock:
    """Real time, plus the control plane's test-clock offset once a heartbeat said it is movable.
    The offset only grows (the test clock never moves back; a slow answer must not pull it back)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def follow(self, answer: dict[str, Any]) -> None:
        if not answer.get("clock_movable") or not isinstance(answer.get("now"), str):
            return
        offset = datetime.fromisoformat(answer["now"]) - datetime.now(UTC)
        if offset > self.offset + timedelta(milliseconds=500):
            self.offset = offset


class SessionSource(Protocol):
    """What a heartbeat reports (implemented by sfu.service.Sfu)."""

    @property
    def node_id(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...

    def live_sessions(self) -> list[dict[str, Any]]: ...


class Heartbeat:
    def __init__(self, source: SessionSource, transport: Transport, *, interval: float,
                 clock: FollowingClock | None = None) -> None:
        self.source = source
        self.transport = transport
        self.interval = interval
        self.clock = clock
        self.beats = 0
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def payload(self) -> dict[str, Any]:
        return {"node_id": self.source.node_id, "started_at": self.source.started_at.isoformat(),
                "sessions": self.source.live_sessions()}

    async def beat(self) -> bool:
        """One heartbeat; False (logged once per outage) when the control plane did not take it."""
        try:
            answer = await self.transport(self.payload())
        except Exception as exc:
            if not self._failing:
                log.warning("heartbeat to the control plane failed (%s); the node keeps its visits running and "
                            "retries every %.1f s", exc, self.interval)
            self._failing = True
            return False
        if self._failing:
            log.info("heartbeat to the control plane works again")
        self._failing = False
        self.beats += 1
        if self.clock is not None:
            self.clock.follow(answer)
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.interval)


def http_transport(control_url: str, media_secret: str, *, timeout: float = 5.0) -> Transport:
    """POST /v1/internal/media-heartbeat with the media secret."""
    url = control_url.rstrip("/") + "/v1/internal/media-heartbeat"
    headers = {"Authorization": f"Bearer {media_secret}"}

    async def send(payload: dict[str, Any]) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.post(url, json=payload, headers=headers) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {(await resp.text())[:200]}")
            answer: dict[str, Any] = await resp.json()
            return answer

    return send
