"""Ending a room is idempotent and whole: a shutdown that arrives while a room is already ending
(at its scheduled end, S2) waits for that ending, so its `ended` report and its recording's
manifest are not cut off (S6, R2); a report the outbox cannot store never leaves the room behind."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sfu.events import VisitEvent
from tests.sfu.test_signaling import Stack, connect, now, stack  # noqa: F401  (fixture)


async def test_a_shutdown_during_a_rooms_end_waits_for_it_and_reports_once(stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    visitor = await connect(stack, stack.token("visit-end", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-end", "resident-1", "resident", start=start, end=end))
    try:
        await visitor.wait_message("participant_joined", within=10)
        room = stack.sfu.rooms["visit-end"]
        first = asyncio.create_task(room.end("completed", message="the visit reached its scheduled end"))
        await asyncio.sleep(0)  # the room is ending...
        await stack.sfu.close()  # ...when the shutdown comes: it waits for that ending
        assert first.done() and "visit-end" not in stack.sfu.rooms
        ended = [e for e in stack.events.events if e.kind == "ended"]
        assert [(e.reason, e.detail) for e in ended] == [("completed", "the visit reached its scheduled end")]
        assert (await visitor.wait_message("ended", within=2))["reason"] == "completed"
    finally:
        await visitor.close()
        await resident.close()


async def test_a_room_is_released_even_when_its_end_cannot_be_reported(stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    visitor = await connect(stack, stack.token("visit-full", "user-1", "visitor", start=start, end=end))
    try:
        room = stack.sfu.rooms["visit-full"]
        real_report = stack.events.report

        async def disk_full(event: VisitEvent) -> None:
            if event.kind == "ended":
                raise OSError(28, "No space left on device")
            await real_report(event)

        stack.events.report = disk_full  # type: ignore[method-assign]
        assert await stack.sfu.disconnect("visit-full", "facility")  # no exception reaches the officer
        assert "visit-full" not in stack.sfu.rooms and room.closed
        assert (await visitor.wait_message("ended", within=2))["disconnect_reason"] == "facility"
    finally:
        await visitor.close()
