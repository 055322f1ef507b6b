"""The seam between the SFU and the control plane: visit events out, one small interface.

`VisitEventSink` is what a room reports to. `InProcessEventSink` keeps events in memory (one
process, tests); `ControlApiEventSink` posts them to the control API's
`/v1/internal/media-events` with the media secret. A Redis-backed sink for several SFU workers
implements the same one method.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import aiohttp

log = logging.getLogger(__name__)
EventKind = Literal["participant_joined", "participant_left", "started", "ended",
                    "monitor_joined", "monitor_left", "privilege_refused", "join_refused", "recording_closed",
                    "recording_failed"]


@dataclass(frozen=True)
class VisitEvent:
    visit_id: str
    kind: EventKind
    occurred_at: datetime
    participant: Literal["visitor", "resident"] | None = None
    reason: Literal["completed", "disconnected", "failed"] | None = None
    disconnect_reason: Literal["conduct", "facility", "technical"] | None = None
    connected_seconds: int | None = None
    detail: str | None = None
    actor: str | None = None  # the officer of a monitor event; what was refused on a privileged visit
    manifest: dict[str, Any] | None = None  # recording_closed: the recorder's (unsigned) manifest
    session_id: str | None = None  # the room (one per visit per node boot) that saw it
    node_id: str | None = None  # the media node that reported it (set by the node)
    event_id: str = field(default_factory=lambda: f"sfu-{uuid.uuid4().hex}")

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in asdict(self).items() if v is not None}
        body["occurred_at"] = self.occurred_at.isoformat()
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> VisitEvent:
        """The inverse of `to_json` (an outbox stores events as JSON)."""
        fields = dict(body)
        fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
        return cls(**fields)


class VisitEventSink(Protocol):
    async def report(self, event: VisitEvent) -> None: ...


class InProcessEventSink:
    def __init__(self) -> None:
        self.events: list[VisitEvent] = []
        self._changed = asyncio.Condition()

    async def report(self, event: VisitEvent) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def wait_for(self, kind: EventKind) -> VisitEvent:
        """The first event of `kind`, waiting for it (callers bound this with asyncio.timeout)."""
        async with self._changed:
            while True:
                for e in self.events:
                    if e.kind == kind:
                        return e
                await self._changed.wait()


class ControlApiEventSink:
    """Reports to the control API; retries a few times (event ids make retries harmless)."""

    def __init__(self, base_url: str, media_secret: str, *, attempts: int = 5) -> None:
        self.url = base_url.rstrip("/") + "/v1/internal/media-events"
        self.headers = {"Authorization": f"Bearer {media_secret}"}
        self.attempts = attempts

    async def report(self, event: VisitEvent) -> None:
        delay = 0.2
        async with aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=10)) as http:
            for attempt in range(1, self.attempts + 1):
                try:
                    async with http.post(self.url, json=event.to_json()) as resp:
                        if resp.status < 500:
                            if resp.status >= 400:
                                log.warning("control API refused %s: %s", event.kind, await resp.text())
                            return
                except aiohttp.ClientError as exc:
                    log.warning("reporting %s failed (attempt %d): %s", event.kind, attempt, exc)
                await asyncio.sleep(delay)
                delay *= 2
