"""A visit-event sink that keeps events in memory, for tests and benchmarks: what a room reports,
in order, with a way to wait for one (the product's sinks are the outbox and the embedded
control-plane sink, see sfu/events.py)."""

from __future__ import annotations

import asyncio

from sfu.events import EventKind, VisitEvent


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
