"""Live monitoring and privilege, through the real API, signaling and SFU with aiortc clients.

Social visit: an officer of the facility watches and listens, hidden (the parties are never
told), the first frame arrives within a second, and the join and leave are audited.
Privileged visit: every attack from the issue is tried while the visit runs — officer,
investigator and admin asking to monitor, a forged token, a replayed token, a social visit's
monitor token, a monitor token minted for the privileged visit itself (as a compromised control
plane might), a type change — all fail, all are in the audit log, the router never had a
monitor or recorder consumer, and the attestation (P3) is clean.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_api.auth import Role
from openvisit.join_tokens import JoinTokenSigner
from openvisit.signed_documents import SignatureError, verify_document
from sfu.aiortc_adapter import tap_receiver
from sfu.router import EncodedFrame
from tests.sfu.test_signaling import Client
from tests.support import Api, As
from tests.support_booking import at, book
from tests.support_facility import FacilityWorld, build_facility
from tests.test_visit_e2e import _both_receive_video, _join


@dataclass
class Monitor:
    pc: RTCPeerConnection
    ws: aiohttp.ClientWebSocketResponse
    session: aiohttp.ClientSession
    messages: list[dict[str, Any]]
    frames: dict[int, list[tuple[float, EncodedFrame]]] = field(default_factory=dict)  # m-line -> frames
    started: float = 0.0
    connected_at: float | None = None  # when DTLS finished: media can flow from here on

    async def close(self) -> None:
        await self.pc.close()
        await self.ws.close()
        await self.session.close()


def signaling_url(api: Api) -> str:
    return f"ws://{api.client.server.host}:{api.client.server.port}/v1/signaling"


async def watch(api: Api, token: str) -> Monitor:
    """What the officer console does: four recv-only m-lines (visitor audio, video, resident audio, video)."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(signaling_url(api))
    # MAX_BUNDLE: aiortc's BALANCED policy loses the second video m-line (aiortc issues 1414/1437).
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    monitor = Monitor(pc, ws, session, [], started=time.monotonic())
    for kind in ("audio", "video", "audio", "video"):
        pc.addTransceiver(kind, direction="recvonly")

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected" and monitor.connected_at is None:
            monitor.connected_at = time.monotonic()

    @pc.on("track")
    def on_track(track: Any) -> None:
        index, transceiver = next((i, t) for i, t in enumerate(pc.getTransceivers()) if t.receiver.track is track)
        frames = monitor.frames.setdefault(index, [])
        tap_receiver(transceiver.receiver, lambda f: frames.append((time.monotonic(), f)))

    await ws.send_json({"type": "join", "token": token})
    first = await ws.receive_json(timeout=10)
    monitor.messages.append(first)
    if first["type"] != "joined":
        return monitor
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
    msg = await ws.receive_json(timeout=10)
    monitor.messages.append(msg)
    if msg["type"] == "answer":
        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
    return monitor


async def audit_actions(api: Api, visit_id: str) -> list[str]:
    from control_api.services import audit

    async with api.ctx.read_sessions() as session:
        return [e.action for e in await audit.for_visit(session, visit_id)]


async def until(predicate: Any, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


async def live(api: Api, w: FacilityWorld, booker: As, visit_type: str = "social") -> dict[str, Any]:
    visit = (await book(booker, w.resident_id, at(api, days=1), length=30, visit_type=visit_type)).ok(201)
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    (await w.kiosk.post(f"/v1/visits/{visit['id']}/check-in")).ok()
    return visit


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_officer_watches_a_social_visit_hidden_and_audited(api: Api, loopback_only: None) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    family, kiosk = await _join(api, visitor, visit["id"]), await _join(api, w.kiosk, visit["id"])
    monitors: list[Monitor] = []
    try:
        await _both_receive_video(family, kiosk)
        listed = (await w.officer.get(w.path("/live-visits"))).ok()
        assert [(v["id"], v["locked"], v["on_media_server"]) for v in listed] == [(visit["id"], False, True)]
        (await w.investigator.post(f"/v1/visits/{visit['id']}/monitor")).problem(403)
        joined_at = time.monotonic()
        grant = (await w.officer.post(f"/v1/visits/{visit['id']}/monitor")).ok()
        assert grant["participant_role"] == "monitor"
        monitor = await watch(api, grant["join_token"])
        monitors.append(monitor)
        assert monitor.messages[-1]["type"] == "answer"

        async def both_videos() -> bool:
            return bool(monitor.frames.get(1)) and bool(monitor.frames.get(3))

        assert await until(both_videos, 5)
        counts = {k: len(v) for k, v in monitor.frames.items()}
        assert counts[0] > counts[1] and counts[2] > counts[3]  # audio on 0 and 2, video on 1 and 3
        first_video = min(monitor.frames[1][0][0], monitor.frames[3][0][0])
        # The keyframe is asked for on join and held until the officer's connection is up, so the
        # picture comes with the connection, not with the publisher's next keyframe (minutes away).
        # ICE and DTLS themselves take seconds on a loaded CI machine, so they are timed apart.
        assert monitor.connected_at is not None
        assert first_video - monitor.connected_at < 1.0, \
            f"first frame {first_video - monitor.connected_at:.2f} s after connecting"
        assert first_video - joined_at < 10.0, f"first frame {first_video - joined_at:.2f} s after joining"
        assert monitor.frames[1][0][1].keyframe and monitor.frames[3][0][1].keyframe
        assert await until(lambda: asyncio.sleep(0, bool(monitor.frames.get(0)) and bool(monitor.frames.get(2)))), \
            "the officer hears both parties"
        # Hidden: nothing about the monitor reaches the parties.
        for client in (family, kiosk):
            assert all(m["type"] not in ("participant_joined",) or m.get("side") in ("visitor", "resident")
                       for m in client.messages)
            assert not [m for m in client.messages if "monitor" in str(m)]
        # A second officer watches the same visit at the same time.
        second = await api.create_user(Role.OFFICER, facility_id=w.facility_id)
        other = await watch(api, (await second.post(f"/v1/visits/{visit['id']}/monitor")).ok()["join_token"])
        monitors.append(other)

        async def second_sees_both() -> bool:
            return bool(other.frames.get(1)) and bool(other.frames.get(3))

        assert await until(second_sees_both, 5)
        assert len(api.ctx.media.rooms[visit["id"]].monitors) == 2  # type: ignore[union-attr]
        # A second token is needed to watch again: the first cannot be replayed.
        replay = await watch(api, grant["join_token"])
        monitors.append(replay)
        assert replay.messages[-1]["code"] == "token-used"
        await monitor.ws.send_json({"type": "leave"})

        async def audited() -> bool:
            return {"monitor.authorized", "monitor.join", "monitor.leave", "media.join_refused"} <= set(
                await audit_actions(api, visit["id"]))

        assert await until(audited)
    finally:
        for m in monitors:
            await m.close()
        await family.close()
        await kiosk.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_privileged_visit_withstands_every_attack_and_attests_it(api: Api, loopback_only: None) -> None:
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None
    visitor = await w.approved_visitor(api)
    social = await live(api, w, visitor)
    visit = await live(api, w, w.attorney, visit_type="privileged")
    attorney_client, kiosk = await _join(api, w.attorney, visit["id"]), await _join(api, w.kiosk, visit["id"])
    attempts: list[Monitor | Client] = []
    try:
        await _both_receive_video(attorney_client, kiosk)
        room = api.ctx.media.rooms[visit["id"]]  # type: ignore[union-attr]
        listed = {v["id"]: v for v in (await w.officer.get(w.path("/live-visits"))).ok()}
        assert listed[visit["id"]]["locked"] is True
        # 1. Staff of the facility ask to monitor it: refused, each attempt audited.
        for staff in (w.officer, w.investigator, w.admin, w.operator):
            (await staff.post(f"/v1/visits/{visit['id']}/monitor")).problem(403, "privileged-visit")
        # 2. A forged monitor token (someone else's key) for the privileged visit.
        forged, _ = JoinTokenSigner(Ed25519PrivateKey.generate()).issue(
            visit_id=visit["id"], participant_id="intruder", participant_role="monitor", visit_type="social",
            visit_starts_at=room.starts_at, visit_ends_at=room.ends_at,
            not_before=api.ctx.clock.now() - timedelta(minutes=1), expires_at=room.ends_at)
        attempts.append(await watch(api, forged))
        assert attempts[-1].messages[-1]["code"] == "bad-token"
        # 3. A social visit's monitor token (as the API grants them) presented during this visit:
        #    it names the social visit, so it can only ever reach that one, never this one.
        social_token, _ = api.ctx.join_tokens.issue(
            visit_id=social["id"], participant_id=str(w.officer.principal_id), participant_role="monitor",
            visit_type="social", visit_starts_at=datetime.fromisoformat(social["starts_at"]),
            visit_ends_at=room.ends_at, not_before=api.ctx.clock.now() - timedelta(minutes=1),
            expires_at=room.ends_at)
        attempts.append(await watch(api, social_token))
        assert attempts[-1].messages[-1]["code"] == "not-live" and not room.monitors
        # 4. A monitor token minted for the privileged visit itself, with the real key (a compromised
        #    control plane): the router refuses it.
        minted, _ = api.ctx.join_tokens.issue(
            visit_id=visit["id"], participant_id=str(w.officer.principal_id), participant_role="monitor",
            visit_type="social", visit_starts_at=room.starts_at, visit_ends_at=room.ends_at,
            not_before=api.ctx.clock.now() - timedelta(minutes=1), expires_at=room.ends_at)
        attempts.append(await watch(api, minted))
        assert attempts[-1].messages[-1]["code"] == "privileged"
        # 5. A replayed participant token: cannot take the attorney's place.
        token = (await w.attorney.post(f"/v1/visits/{visit['id']}/join")).ok()["join_token"]
        from tests.sfu.test_signaling import Stack, connect

        first = await connect(Stack(signaling_url(api), None, None, None), token)  # type: ignore[arg-type]
        attempts.append(first)
        replayed = await connect(Stack(signaling_url(api), None, None, None), token)  # type: ignore[arg-type]
        attempts.append(replayed)
        assert replayed.messages[-1]["code"] == "token-used"
        # 6. Changing the booking's type after the fact.
        for who in (w.attorney, w.admin, w.operator):
            (await who.patch(f"/v1/visits/{visit['id']}", {"visit_type": "social"})).problem(422)

        assert not room.monitors
        assert all(c.role == "peer" for p in room.router.producers for c in p.consumers)

        async def all_audited() -> bool:
            actions = await audit_actions(api, visit["id"])
            return (actions.count("privilege.refused") >= 5 and actions.count("media.join_refused") >= 2
                    and actions.count("visit.change_refused") == 3)

        assert await until(all_audited), await audit_actions(api, visit["id"])
        actions = await audit_actions(api, visit["id"])
        assert "monitor.join" not in actions and "monitor.authorized" not in actions
        # P3: the attestation, for the attorney and the operator only, signed, clean, attempts listed.
        signed = (await w.attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok()
        document = verify_document(api.ctx.join_tokens.public_key, signed)
        assert document["clean"] is True and document["monitors_attached"] == 0
        assert document["recorders_attached"] == 0 and document["audit_chain_intact"] is True
        assert len(document["refused_attempts"]) >= 7
        assert {a["actor_role"] for a in document["refused_attempts"]} >= {"officer", "investigator", "admin"}
        assert (await w.operator.get(f"/v1/visits/{visit['id']}/attestation")).ok()["document"]["clean"]
        for staff in (w.officer, w.admin, w.investigator, visitor):
            assert (await staff.get(f"/v1/visits/{visit['id']}/attestation")).status in (403, 404)
        signed["document"]["monitors_attached"] = 1
        with pytest.raises(SignatureError):
            verify_document(api.ctx.join_tokens.public_key, signed)
        (await w.operator.get(f"/v1/visits/{social['id']}/attestation")).problem(409, "not-privileged")
    finally:
        for a in attempts:
            await a.close()
        await attorney_client.close()
        await kiosk.close()
