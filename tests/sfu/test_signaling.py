"""A visit through signaling and the SFU with two real WebRTC clients (aiortc) on loopback:
join tokens (S1), byte-for-byte forwarding both ways, warnings (S3), the scheduled end (S2),
an officer's disconnect (S4), rejoin (S5), and the events reported to the control plane."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_api.app import start_site
from loadtests.synthetic_media import ReplayTrack, encode_opus, encode_vp8
from openvisit.join_tokens import JoinTokenSigner, JoinTokenVerifier
from sfu.aiortc_adapter import rtc_configuration, tap_receiver
from sfu.router import EncodedFrame
from sfu.service import Sfu
from signaling.server import create_signaling_app
from tests.support_events import InProcessEventSink

VP8 = encode_vp8(frames=60)
OPUS = encode_opus(packets=60)


def now() -> datetime:
    return datetime.now(UTC)


def whole(t: datetime) -> datetime:
    """Join tokens carry whole seconds."""
    return t.replace(microsecond=0)


@dataclass
class Stack:
    url: str
    sfu: Sfu
    events: InProcessEventSink
    signer: JoinTokenSigner

    def token(self, visit_id: str, participant: str, role: str, *, start: datetime, end: datetime,
              visit_type: str = "social") -> str:
        token, _ = self.signer.issue(visit_id=visit_id, participant_id=participant, participant_role=role,
                                     visit_type=visit_type, visit_starts_at=start, visit_ends_at=end,
                                     not_before=start - timedelta(minutes=10), expires_at=end)
        return token


@pytest.fixture
async def stack(loopback_only: None) -> AsyncIterator[Stack]:
    key = Ed25519PrivateKey.generate()
    events = InProcessEventSink()
    sfu = Sfu(events, now, warnings=(3, 1), media_timeout=3)
    app = create_signaling_app(sfu, JoinTokenVerifier(key.public_key()), now)
    runner, port = await start_site(app, "127.0.0.1", 0)
    yield Stack(f"ws://127.0.0.1:{port}/v1/signaling", sfu, events, JoinTokenSigner(key))
    await sfu.close()
    await runner.cleanup()


@dataclass
class Client:
    """What a browser or the mobile app does, with aiortc: join, offer, receive, listen."""

    pc: RTCPeerConnection
    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    video: ReplayTrack
    messages: list[dict[str, Any]] = field(default_factory=list)
    received: dict[str, list[EncodedFrame]] = field(default_factory=lambda: {"audio": [], "video": []})
    reader: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self.pc.close()
        await self.ws.close()
        await self.session.close()
        if self.reader:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader

    async def wait_message(self, kind: str, within: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                for m in self.messages:
                    if m["type"] == kind:
                        return m
                await asyncio.sleep(0.05)


async def connect(stack: Stack, token: str | None, *, trickle: bool = False, publish: bool = True,
                  resume: str | None = None) -> Client:
    """Join with a join token, or (`resume`) with the resume token an earlier join was given (S5)."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(stack.url)
    pc = RTCPeerConnection(rtc_configuration())
    video = ReplayTrack("video", VP8)
    if publish:
        pc.addTrack(ReplayTrack("audio", OPUS))
        pc.addTrack(video)
    else:  # connects, receives, sends nothing: as a client whose media never starts
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
    client = Client(pc, ws, session, video)

    @pc.on("track")
    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        tap_receiver(receiver, client.received[track.kind].append)

    await ws.send_json({"type": "join", "resume": resume} if resume is not None else {"type": "join", "token": token})
    joined = await ws.receive_json(timeout=10)
    client.messages.append(joined)
    if joined["type"] != "joined":
        return client
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    if not trickle:
        await ws.send_json({"type": "offer", "sdp": sdp})
    else:  # as a browser that trickles: the offer without candidates, then each one, then the end
        lines = sdp.splitlines()
        await ws.send_json({"type": "offer", "sdp": "\r\n".join(
            line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))) + "\r\n"})
        mid = None
        for line in lines:
            if line.startswith("a=mid:"):
                mid = line.removeprefix("a=mid:")
            elif line.startswith("a=candidate:") and mid == "0":
                await ws.send_json({"type": "candidate", "candidate": {
                    "candidate": line.removeprefix("a="), "sdpMid": mid, "sdpMLineIndex": 0}})
        await ws.send_json({"type": "candidate", "candidate": {"candidate": "", "sdpMid": "0"}})
    while True:
        msg = await ws.receive_json(timeout=10)
        client.messages.append(msg)
        if msg["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
            break

    async def read() -> None:
        async for raw in ws:
            if raw.type == aiohttp.WSMsgType.TEXT:
                client.messages.append(raw.json())

    client.reader = asyncio.create_task(read())
    return client


def forwarded_in_order(received: list[EncodedFrame], sent: list[bytes]) -> bool:
    data = [f.data for f in received]
    if not data:
        return False
    first = sent.index(data[0])
    return data == sent[first:first + len(data)]


async def test_a_visit_forwards_both_ways_warns_and_ends_at_its_scheduled_end(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(seconds=6)
    visitor = await connect(stack, stack.token("visit-a", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-a", "resident-9", "resident", start=start, end=end))
    try:
        await visitor.wait_message("participant_joined")
        for _ in range(60):
            if len(visitor.received["video"]) > 20 and len(resident.received["video"]) > 20:
                break
            await asyncio.sleep(0.1)
        # Each side decodes-ready frames of the other, byte for byte as sent, starting at a keyframe.
        assert forwarded_in_order(visitor.received["video"], resident.video.sent)
        assert forwarded_in_order(resident.received["video"], visitor.video.sent)
        assert visitor.received["video"][0].keyframe and resident.received["video"][0].keyframe
        assert visitor.received["audio"] and resident.received["audio"]
        warning = await visitor.wait_message("warning")
        assert warning["seconds_left"] in (3, 1)
        ended = await resident.wait_message("ended", within=10)
        assert ended["reason"] == "completed"
        assert abs((now() - end).total_seconds()) < 1.5  # to the second, not extended (S2)
        final = await asyncio.wait_for(stack.events.wait_for("ended"), 5)  # reported after the clients are told
        kinds = [e.kind for e in stack.events.events]
        assert kinds.count("participant_joined") == 2 and "started" in kinds and kinds[-1] == "ended"
        assert final.reason == "completed" and 3 <= (final.connected_seconds or 0) <= 7
        # After the end nobody gets back in, whatever their token says.
        late = await connect(stack, stack.token("visit-a", "user-1", "visitor", start=start, end=end))
        assert late.messages[-1]["type"] == "error"
        await late.close()
    finally:
        await visitor.close()
        await resident.close()


async def test_an_officer_disconnect_ends_the_visit_at_once_with_its_reason(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(stack, stack.token("visit-b", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-b", "resident-9", "resident", start=start, end=end))
    try:
        await visitor.wait_message("participant_joined")
        assert await stack.sfu.disconnect("visit-b", "conduct")
        for client in (visitor, resident):
            ended = await client.wait_message("ended", within=5)
            assert (ended["reason"], ended["disconnect_reason"]) == ("disconnected", "conduct")
        final = await asyncio.wait_for(stack.events.wait_for("ended"), 5)
        assert (final.reason, final.disconnect_reason) == ("disconnected", "conduct")
    finally:
        await visitor.close()
        await resident.close()


async def test_a_dropped_participant_rejoins_without_restarting_the_visit(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(stack, stack.token("visit-c", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-c", "resident-9", "resident", start=start, end=end))
    for _ in range(50):  # the visit is under way: the visitor sees the resident
        if len(visitor.received["video"]) > 30:
            break
        await asyncio.sleep(0.1)
    await resident.close()  # the resident's connection drops
    await visitor.wait_message("participant_left")
    before = {kind: len(frames) for kind, frames in visitor.received.items()}
    again = await connect(stack, stack.token("visit-c", "resident-9", "resident", start=start, end=end))
    try:
        for _ in range(60):
            if len(visitor.received["video"]) > before["video"] + 10 and len(again.received["video"]) > 10:
                break
            await asyncio.sleep(0.1)
        assert len(again.received["video"]) > 10
        # The visitor sees and hears the rejoined resident: the stream it receives carries on.
        assert len(visitor.received["video"]) > before["video"] + 10
        assert len(visitor.received["audio"]) > before["audio"] + 20
        # ...on one timeline: the RTP clock moved on by about the time the resident was away
        # (a receiver's jitter buffer would stall on timestamps that jumped back to zero).
        video = visitor.received["video"]
        assert video[before["video"]].timestamp - video[before["video"] - 1].timestamp > 9000  # > 0.1 s at 90 kHz
        assert stack.sfu.rooms["visit-c"].ends_at == whole(end)  # S5: the same visit, the same end
        assert [e.kind for e in stack.events.events].count("ended") == 0
    finally:
        await visitor.close()
        await again.close()


async def test_a_visit_whose_media_never_flows_is_reported_failed(stack: Stack) -> None:
    """Both parties connected but no frame could reach either: our side failed, and the visit
    is reported `failed` (which credits it, M6) instead of running silent to its end."""
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(stack, stack.token("visit-f", "user-1", "visitor", start=start, end=end), publish=False)
    resident = await connect(stack, stack.token("visit-f", "resident-9", "resident", start=start, end=end),
                             publish=False)
    try:
        ended = await visitor.wait_message("ended", within=10)
        assert ended["reason"] == "failed" and "credited" in ended["message"]
        final = await asyncio.wait_for(stack.events.wait_for("ended"), 5)
        assert final.reason == "failed"
    finally:
        await visitor.close()
        await resident.close()


async def test_a_client_that_trickles_its_candidates_gets_media(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(stack, stack.token("visit-t", "user-1", "visitor", start=start, end=end), trickle=True)
    resident = await connect(stack, stack.token("visit-t", "resident-9", "resident", start=start, end=end),
                             trickle=True)
    try:
        for _ in range(80):
            if len(visitor.received["video"]) > 5 and len(resident.received["video"]) > 5:
                break
            await asyncio.sleep(0.1)
        assert forwarded_in_order(visitor.received["video"], resident.video.sent)
        assert forwarded_in_order(resident.received["video"], visitor.video.sent)
        assert not [m for m in visitor.messages + resident.messages if m["type"] == "error"]
        for side in ("visitor", "resident"):  # the SFU learnt the candidates by trickle, not from the offer
            ice = stack.sfu.rooms["visit-t"].participants[side].pc.getTransceivers()[0].receiver.transport.transport
            assert [c for c in ice.getRemoteCandidates() if c.type == "host"]
    finally:
        await visitor.close()
        await resident.close()


async def test_malformed_candidates_get_an_error_and_the_call_goes_on(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    visitor = await connect(stack, stack.token("visit-m", "user-1", "visitor", start=start, end=end))
    try:
        for bad in ({"candidate": "candidate:garbage"}, {"candidate": "candidate:1 1 udp x 1.2.3.4 9 typ host",
                                                         "sdpMid": "0"}, "text", {"candidate": 5}):
            await visitor.ws.send_json({"type": "candidate", "candidate": bad})
        for _ in range(100):
            if len([m for m in visitor.messages if m.get("code") == "bad-candidate"]) == 4:
                break
            await asyncio.sleep(0.05)
        assert len([m for m in visitor.messages if m.get("code") == "bad-candidate"]) == 4
        assert stack.sfu.rooms["visit-m"].participants["visitor"].pc.connectionState != "closed"
    finally:
        await visitor.close()


async def test_bad_tokens_are_refused(stack: Stack) -> None:
    client = await connect(stack, "not-a-token")
    assert client.messages[-1]["type"] == "error" and client.messages[-1]["code"] == "bad-token"
    await client.close()
    other_key = JoinTokenSigner(Ed25519PrivateKey.generate())
    forged, _ = other_key.issue(visit_id="v", participant_id="p", participant_role="visitor", visit_type="social",
                                visit_starts_at=now(), visit_ends_at=now() + timedelta(minutes=5),
                                not_before=now() - timedelta(minutes=1), expires_at=now() + timedelta(minutes=5))
    client = await connect(stack, forged)
    assert client.messages[-1]["code"] == "bad-token"
    await client.close()
    early = stack.token("v2", "p", "visitor", start=now() + timedelta(hours=1), end=now() + timedelta(hours=2))
    client = await connect(stack, early)
    assert "lobby" in client.messages[-1]["message"]
    await client.close()
