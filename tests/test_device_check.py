"""The device check's loopback (issue 13) through the real API, signaling and SFU, with aiortc
clients on loopback: a signed-in person's own audio and video come back through the media server;
check tokens and visit tokens never cross (S1: a visit's token is bound to its visit, and a
check's names none); one open check per account, a rate per account, a check that ends itself;
nothing of it touches a visit, a recording or a monitor (P1's router refuses both)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_api.app import start_site
from control_api.auth import Role
from loadtests.synthetic_media import ReplayTrack
from openvisit.device_check_tokens import DeviceCheckTokenSigner
from openvisit.join_tokens import JoinTokenSigner, JoinTokenVerifier
from sfu.aiortc_adapter import rtc_configuration, tap_receiver
from sfu.router import EncodedFrame, PrivilegeViolationError
from sfu.service import Sfu
from signaling.server import create_signaling_app
from tests.sfu.test_signaling import OPUS, VP8, forwarded_in_order, now
from tests.support import Api
from tests.support_events import InProcessEventSink
from tests.support_facility import build_facility
from tests.test_monitoring import audit_actions, live, until

sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@dataclass
class CheckClient:
    """What the device check page does: `{type: check, token}`, one offer, its own media back."""

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
        if self.reader is not None:
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


async def check(url: str, token: str, first_type: str = "check") -> CheckClient:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url)
    pc = RTCPeerConnection(rtc_configuration())
    video = ReplayTrack("video", VP8)
    pc.addTrack(ReplayTrack("audio", OPUS))
    pc.addTrack(video)
    client = CheckClient(pc, ws, session, video)

    @pc.on("track")
    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
        tap_receiver(receiver, client.received[track.kind].append)

    await ws.send_json({"type": first_type, "token": token})
    first = await ws.receive_json(timeout=10)
    client.messages.append(first)
    if first["type"] not in ("check_joined", "joined"):
        return client
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
    while True:
        msg = await ws.receive_json(timeout=10)
        client.messages.append(msg)
        if msg["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
            break
        if msg["type"] in ("error", "ended"):
            return client

    async def read() -> None:
        async for raw in ws:
            if raw.type == aiohttp.WSMsgType.TEXT:
                client.messages.append(raw.json())

    client.reader = asyncio.create_task(read())
    return client


def signaling(api: Api) -> str:
    return f"ws://{api.client.server.host}:{api.client.server.port}/v1/signaling"


def media(api: Api) -> Sfu:
    assert isinstance(api.ctx.media, Sfu)
    return api.ctx.media


@sqlite
async def test_a_visitor_sees_their_own_video_come_back_through_the_server(api: Api, loopback_only: None) -> None:
    visitor = await api.create_user(Role.VISITOR)
    grant = (await visitor.post("/v1/device-checks")).ok(201)
    assert grant["signaling_url"] == signaling(api) and grant["max_seconds"] == 60
    assert grant["ice_servers"] == [] and grant["expires_at"]
    started = time.monotonic()
    client = await check(grant["signaling_url"], grant["join_token"])
    try:
        assert client.messages[0]["type"] == "check_joined" and client.messages[0]["max_seconds"] == 60

        async def echoed() -> bool:
            return len(client.received["video"]) >= 10 and len(client.received["audio"]) >= 10

        assert await until(echoed, 5), {k: len(v) for k, v in client.received.items()}
        assert time.monotonic() - started < 5
        # Its own frames, byte for byte as sent, in order from a keyframe: forwarded, never decoded.
        assert forwarded_in_order(client.received["video"], client.video.sent)
        assert client.received["video"][0].keyframe
        sfu = media(api)
        session = sfu.device_checks.sessions[f"visitor:{visitor.principal_id}"]
        assert session.frames_echoed > 0
        # No visit is involved: no room, no session reported to the control plane, nothing to bill.
        assert sfu.rooms == {} and sfu.live_sessions() == []
        # Never recorded, never watched: the check's router refuses both, whoever asks (as P1's does).
        for role in ("recorder", "monitor"):
            with pytest.raises(PrivilegeViolationError):
                session.router.admit("someone", role)
        # One open check per account: the API refuses a second while this one runs.
        (await visitor.post("/v1/device-checks")).problem(409, "check-open")
    finally:
        await client.ws.send_json({"type": "leave"})
        await client.close()

    async def closed() -> bool:
        return not media(api).device_checks.sessions

    assert await until(closed, 3)
    (await visitor.post("/v1/device-checks")).ok(201)  # after it ended, another may start


@sqlite
async def test_kiosks_and_staff_may_check_and_anonymous_callers_may_not(api: Api) -> None:
    w = await build_facility(api)
    for caller in (w.kiosk, w.officer, w.operator):
        grant = (await caller.post("/v1/device-checks")).ok(201)
        assert grant["join_token"]
    (await api.anonymous.post("/v1/device-checks")).problem(401)
    bad = await api.client.post("/v1/device-checks", headers={"Authorization": "Bearer nonsense"})
    assert bad.status == 401 and bad.headers["Content-Type"].startswith("application/problem+json")


@sqlite
async def test_visit_tokens_never_open_a_check_and_check_tokens_never_join_a_visit(
        api: Api, loopback_only: None) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    visit_token = (await visitor.post(f"/v1/visits/{visit['id']}/join")).ok()["join_token"]
    check_token = (await visitor.post("/v1/device-checks")).ok(201)["join_token"]

    # A visit's token offered as a check: refused, and audited against its visit as a refused join.
    refused = await check(signaling(api), visit_token)
    try:
        assert refused.messages[0]["type"] == "error" and refused.messages[0]["code"] == "bad-token"
    finally:
        await refused.close()

    async def audited() -> bool:
        return "media.join_refused" in await audit_actions(api, visit["id"])

    assert await until(audited, 5)
    assert not media(api).device_checks.sessions

    # A check's token offered as a visit join: refused; it names no visit, so no room opens.
    joined = await check(signaling(api), check_token, first_type="join")
    try:
        assert joined.messages[0]["type"] == "error" and joined.messages[0]["code"] == "bad-token"
        assert "device-check" in joined.messages[0]["message"]
    finally:
        await joined.close()
    assert media(api).rooms == {}
    # The visit's token was never used by the refused check: the visitor still joins with it.
    family = await check(signaling(api), visit_token, first_type="join")
    try:
        assert family.messages[0]["type"] == "joined" and family.messages[0]["visit_id"] == visit["id"]
    finally:
        await family.close()
    # And the check token, never used as a visit join, still opens its check.
    mine = await check(signaling(api), check_token)
    try:
        assert mine.messages[0]["type"] == "check_joined"
    finally:
        await mine.close()


@sqlite
async def test_one_open_check_per_account_single_use_tokens_and_a_rate_per_account(
        api: Api, loopback_only: None) -> None:
    visitor = await api.create_user(Role.VISITOR)
    operator = await api.create_user(Role.OPERATOR)
    first, second = [(await visitor.post("/v1/device-checks")).ok(201)["join_token"] for _ in range(2)]
    a = await check(signaling(api), first)
    try:
        assert a.messages[0]["type"] == "check_joined"
        # A second token of the same account while the first check runs (another tab): refused.
        b = await check(signaling(api), second)
        assert (b.messages[0]["type"], b.messages[0].get("code")) == ("error", "check-open")
        await b.close()
        # The same token twice: refused, whatever else is open.
        again = await check(signaling(api), first)
        assert (again.messages[0]["type"], again.messages[0].get("code")) == ("error", "token-used")
        await again.close()
    finally:
        await a.close()

    async def closed() -> bool:
        return not media(api).device_checks.sessions

    assert await until(closed, 3)  # the socket closed: the check is gone at once
    # Rate: 10 per hour per account (two used above); the 11th is 429 with Retry-After.
    for _ in range(8):
        (await visitor.post("/v1/device-checks")).ok(201)
    too_many = await visitor.post("/v1/device-checks")
    body = too_many.problem(429, "too-many-checks")
    wait = int(too_many.headers["Retry-After"])
    assert 3500 <= wait <= 3600 and body["retry_after_seconds"] == wait
    (await operator.post("/v1/device-checks")).ok(201)  # per account: others are not held up
    await api.advance(operator, wait)
    (await visitor.post("/v1/device-checks")).ok(201)


@sqlite
async def test_a_check_ends_itself_after_its_seconds(api: Api, loopback_only: None) -> None:
    visitor = await api.create_user(Role.VISITOR)
    signer = DeviceCheckTokenSigner(api.ctx.join_tokens.signing_key)
    token, _ = signer.issue(account_id=visitor.principal_id or "", account_role="visitor", max_seconds=2,
                            not_before=api.ctx.clock.now() - timedelta(seconds=5),
                            expires_at=api.ctx.clock.now() + timedelta(seconds=30))
    client = await check(signaling(api), token)
    try:
        assert client.messages[0] == {**client.messages[0], "type": "check_joined", "max_seconds": 2}
        began = time.monotonic()
        ended = await client.wait_message("ended", within=5)
        assert ended["reason"] == "completed" and ended["frames_echoed"] > 0
        assert 1.0 <= time.monotonic() - began <= 3.5

        async def gone() -> bool:
            return client.ws.closed and not media(api).device_checks.sessions

        assert await until(gone, 3)
    finally:
        await client.close()


@sqlite
async def test_an_expired_or_forged_check_token_is_refused(api: Api, loopback_only: None) -> None:
    visitor = await api.create_user(Role.VISITOR)
    operator = await api.create_user(Role.OPERATOR)
    token = (await visitor.post("/v1/device-checks")).ok(201)["join_token"]
    forged, _ = DeviceCheckTokenSigner(Ed25519PrivateKey.generate()).issue(
        account_id="x", account_role="visitor", max_seconds=60, not_before=api.ctx.clock.now(),
        expires_at=api.ctx.clock.now() + timedelta(seconds=30))
    client = await check(signaling(api), forged)
    assert client.messages[0]["code"] == "bad-token"
    await client.close()
    await api.advance(operator, 31)  # past the 30 seconds a check token waits to be used
    client = await check(signaling(api), token)
    assert client.messages[0]["code"] == "bad-token" and "expired" in client.messages[0]["message"]
    await client.close()


@pytest.fixture
async def standalone_node(loopback_only: None) -> AsyncIterator[tuple[str, JoinTokenSigner, Sfu]]:
    key = Ed25519PrivateKey.generate()
    sfu = Sfu(InProcessEventSink(), now)
    app = create_signaling_app(sfu, JoinTokenVerifier(key.public_key()), now)
    runner, port = await start_site(app, "127.0.0.1", 0)
    yield f"ws://127.0.0.1:{port}/v1/signaling", JoinTokenSigner(key), sfu
    await sfu.close()
    await runner.cleanup()


async def test_a_standalone_media_node_runs_checks_with_the_shared_key(
        standalone_node: tuple[str, JoinTokenSigner, Sfu]) -> None:
    url, signer, sfu = standalone_node
    token, _ = DeviceCheckTokenSigner(signer.signing_key).issue(
        account_id="kiosk-1", account_role="kiosk", max_seconds=30, not_before=now() - timedelta(seconds=5),
        expires_at=now() + timedelta(seconds=30))
    client = await check(url, token)
    try:
        async def echoed() -> bool:
            return len(client.received["video"]) >= 5

        assert await until(echoed, 5)
        assert forwarded_in_order(client.received["video"], client.video.sent)
        assert sfu.rooms == {} and sfu.device_checks.is_open("kiosk:kiosk-1")
    finally:
        await client.close()
