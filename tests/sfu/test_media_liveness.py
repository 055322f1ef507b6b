"""A party whose media stops is noticed within 5 s even while its sockets stay open (a frozen app,
a dead network behind a live WebSocket), its frozen time is not connected time (S6, M8), and it
may rejoin (S5). After `ended`, the server closes the signaling sockets itself.

Two real aiortc clients on loopback through real signaling (tests/sfu/test_signaling.py). A
client's media is stopped by stopping its RTP senders: ICE, DTLS and the WebSocket stay up, as
with a SIGSTOPped phone app (tests/faults/ freezes a real participant process)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import aiohttp

from sfu.room import DEFAULT_STALL_SECONDS
from tests.sfu.test_signaling import Client, Stack, connect, now, stack  # noqa: F401  (fixtures)


async def _flowing(a: Client, b: Client, frames: int = 20) -> None:
    for _ in range(100):
        if len(a.received["video"]) > frames and len(b.received["video"]) > frames:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("media did not flow both ways")


async def _stop_media(client: Client) -> None:
    for sender in client.pc.getSenders():
        await sender.stop()


async def _socket_closed(client: Client, within: float) -> float:
    started = time.monotonic()
    assert client.reader is not None
    await asyncio.wait_for(asyncio.shield(client.reader), within)  # the reader ends when the server closes
    return time.monotonic() - started


async def test_s5_s6_a_party_whose_media_stops_is_dropped_within_5_s_and_frozen_time_is_not_counted(
        stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    visitor = await connect(stack, stack.token("visit-stall", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-stall", "resident-1", "resident", start=start, end=end))
    try:
        await _flowing(visitor, resident)
        flowing_from = time.monotonic()
        await asyncio.sleep(3)
        frozen_at = time.monotonic()
        frozen_wall = now()
        await _stop_media(resident)
        left = await visitor.wait_message("participant_left", within=6)
        noticed = time.monotonic() - frozen_at
        print(f"\nmedia stopped -> other party told: {noticed:.2f} s")
        assert left == {"type": "participant_left", "side": "resident", "reason": "media stopped"}
        assert noticed < 5.0 and noticed >= DEFAULT_STALL_SECONDS - 0.5
        error = await resident.wait_message("error", within=1)
        assert error["code"] == "media-stopped"
        closed_in = await _socket_closed(resident, within=3)  # the frozen party's socket is closed for it
        print(f"frozen party's socket closed {closed_in:.2f} s after being told")
        reported = next(e for e in stack.events.events if e.kind == "participant_left")
        assert reported.participant == "resident" and reported.detail == "media stopped"
        # The leave is dated when its media stopped, not when it was noticed.
        assert abs((reported.occurred_at - frozen_wall).total_seconds()) < 1.5
        await asyncio.sleep(1)
        assert await stack.sfu.disconnect("visit-stall", "technical")
        ended = await asyncio.wait_for(stack.events.wait_for("ended"), 5)
        both_flowed = frozen_at - flowing_from
        print(f"connected seconds reported {ended.connected_seconds}, media flowed both ways ~{both_flowed:.1f} s "
              f"(+ the time before the check began), frozen and after: {time.monotonic() - frozen_at:.1f} s")
        assert ended.connected_seconds is not None
        assert ended.connected_seconds <= both_flowed + 4  # ramp-up before `flowing_from` + one flowing window
        assert ended.session_id is not None and reported.session_id == ended.session_id
    finally:
        await visitor.close()
        await resident.close()


async def test_s5_the_dropped_party_rejoins_after_its_media_stopped(stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    visitor = await connect(stack, stack.token("visit-back", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-back", "resident-1", "resident", start=start, end=end))
    again: Client | None = None
    try:
        await _flowing(visitor, resident)
        await _stop_media(resident)
        await visitor.wait_message("participant_left", within=6)
        again = await connect(stack, stack.token("visit-back", "resident-1", "resident", start=start, end=end))
        before = len(visitor.received["video"])
        for _ in range(60):
            if len(visitor.received["video"]) > before + 10 and len(again.received["video"]) > 10:
                break
            await asyncio.sleep(0.1)
        assert len(visitor.received["video"]) > before + 10 and len(again.received["video"]) > 10
    finally:
        for c in (visitor, resident, again):
            if c is not None:
                await c.close()


async def test_the_server_closes_the_signaling_sockets_after_ended(stack: Stack) -> None:  # noqa: F811
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=60)
    visitor = await connect(stack, stack.token("visit-close", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-close", "resident-1", "resident", start=start, end=end))
    try:
        await _flowing(visitor, resident, frames=5)
        assert await stack.sfu.disconnect("visit-close", "facility")
        for client in (visitor, resident):
            assert (await client.wait_message("ended", within=3))["disconnect_reason"] == "facility"
            closed_in = await _socket_closed(client, within=3)
            assert client.ws.closed or client.ws.close_code is not None
            print(f"\nsocket closed by the server {closed_in:.2f} s after `ended` reached the client")
        assert isinstance(visitor.ws, aiohttp.ClientWebSocketResponse)
    finally:
        await visitor.close()
        await resident.close()
