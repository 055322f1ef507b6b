"""Room (sfu/room/room.py), the coordinator, driven directly with aiortc clients on loopback and
a clock moved by hand: the scheduled end (S2), warnings on join (S3), an officer's disconnect
(S4), a rejoin replacing the older connection (S5), media that never flows (M6), and privilege
(P1). Its parts have their own tests (test_visit_schedule.py, test_presence.py, ...)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.aiortc_adapter import rtc_configuration
from sfu.room import Room, RoomClosedError
from sfu.router import PrivilegeViolationError
from tests.support_events import InProcessEventSink

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def _unheard(_message: dict[str, Any]) -> None:
    return None


@dataclass
class Party:
    """A client: its peer connection (receive-only: it publishes nothing), what it was told."""

    pc: RTCPeerConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    hung_up: int = 0

    async def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def hangup(self) -> None:
        self.hung_up += 1

    def told(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


@dataclass
class World:
    clock: Clock
    events: InProcessEventSink
    closed: asyncio.Event
    parties: list[Party] = field(default_factory=list)

    def room(self, *, ends_in: timedelta = timedelta(minutes=30), privileged: bool = False,
             media_timeout: float = 30.0) -> Room:
        return Room("visit-1", privileged=privileged, starts_at=START, ends_at=self.clock.at + ends_in,
                    events=self.events, now=self.clock, warnings=(120, 30), media_timeout=media_timeout,
                    on_closed=lambda _room: self.closed.set())

    async def join(self, room: Room, role: str, *, connect: bool = True) -> Party:
        pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        party = Party(pc)
        self.parties.append(party)
        answer = await room.join(f"{role}-1", role, pc.localDescription.sdp, party.send, party.hangup)
        if connect:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return party

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events.events]


@pytest.fixture
async def world(loopback_only: None) -> AsyncIterator[World]:
    w = World(Clock(START + timedelta(minutes=1)), InProcessEventSink(), asyncio.Event())
    yield w
    for party in w.parties:
        await party.pc.close()


async def test_s2_a_room_ends_completed_at_its_scheduled_end_and_then_refuses_joins(world: World) -> None:
    room = world.room(ends_in=timedelta(minutes=10))
    await asyncio.sleep(0.3)
    assert not room.closed
    world.clock.at = room.ends_at  # the clock reaches the end: enforced within a tick
    await asyncio.wait_for(world.closed.wait(), 2)
    assert room.closed and room.end_reason == "the visit reached its scheduled end"
    ended = [e for e in world.events.events if e.kind == "ended"]
    assert [(e.reason, e.connected_seconds, e.session_id) for e in ended] == [("completed", 0, room.session_id)]
    with pytest.raises(RoomClosedError, match="scheduled end"):
        await room.join("user-1", "visitor", "v=0", _unheard)
    with pytest.raises(RoomClosedError):
        await room.add_monitor("officer-1", "v=0", _unheard)


async def test_s3_a_participant_joining_inside_a_threshold_is_warned_at_once(world: World) -> None:
    room = world.room(ends_in=timedelta(seconds=90))
    visitor = await world.join(room, "visitor")
    assert visitor.told("warning") == [{"type": "warning", "seconds_left": 90}]
    assert world.kinds() == ["participant_joined"] and world.events.events[0].participant == "visitor"
    await room.end("completed", message="done")


async def test_s4_an_officers_disconnect_tells_everyone_why_and_ends_the_visit_once(world: World) -> None:
    room = world.room()
    visitor = await world.join(room, "visitor")
    resident = await world.join(room, "resident")
    assert visitor.told("participant_joined") == [{"type": "participant_joined", "side": "resident"}]
    assert resident.told("participant_joined") == [] and set(room.participants) == {"visitor", "resident"}
    await room.disconnect("conduct", "shouting at the officer")
    await room.end("completed", message="a second ending changes nothing")
    for party in (visitor, resident):
        assert party.told("ended") == [{"type": "ended", "reason": "disconnected", "disconnect_reason": "conduct",
                                        "message": "shouting at the officer"}]
        assert party.hung_up == 1
    ended = [e for e in world.events.events if e.kind == "ended"]
    assert [(e.reason, e.disconnect_reason, e.detail) for e in ended] == [
        ("disconnected", "conduct", "shouting at the officer")]
    assert room.closed and room.participants == {} and room.router.closed and world.closed.is_set()


async def test_s5_a_second_join_of_a_side_replaces_the_older_connection(world: World) -> None:
    room = world.room()
    first = await world.join(room, "visitor", connect=False)
    older = room.participants["visitor"]
    second = await world.join(room, "visitor", connect=False)
    assert first.told("error")[0]["code"] == "replaced" and first.hung_up == 1
    assert room.participants["visitor"] is not older and older.dropped and older.pc.connectionState == "closed"
    assert second.messages == [] and second.hung_up == 0
    assert world.kinds() == ["participant_joined", "participant_joined"]  # a replacement is not a leave
    await room.leave("visitor")
    assert world.kinds()[-1] == "participant_left" and room.participants == {}
    await room.end("completed", message="done")


async def test_m6_two_connected_parties_whose_media_never_flows_end_the_visit_failed(world: World) -> None:
    room = world.room(media_timeout=0.5)
    await world.join(room, "visitor")  # receive-only clients: they publish nothing
    await world.join(room, "resident")
    await asyncio.wait_for(world.closed.wait(), 10)  # ICE and DTLS up, then half a second of nothing
    ended = [e for e in world.events.events if e.kind == "ended"]
    assert [(e.reason, e.detail) for e in ended] == [
        ("failed", "no media could flow between the parties; the visit will be credited")]
    assert "started" not in world.kinds() and not room.media_flowed


async def test_p1_a_monitor_on_a_privileged_visit_is_refused_and_the_refusal_reported(world: World) -> None:
    room = world.room(privileged=True)
    with pytest.raises(PrivilegeViolationError):
        await room.add_monitor("officer-1", "v=0", _unheard)
    await asyncio.sleep(0)
    refused = [e for e in world.events.events if e.kind == "privilege_refused"]
    assert [(e.actor, e.detail) for e in refused] == [("officer-1", "monitor")] and room.monitors == {}
    await room.end("completed", message="done")
