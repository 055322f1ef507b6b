"""One visit held by its two parties, visitor and kiosk, as aiortc peers on the bridge's loop: real
join tokens from the public API (S1), the signaling protocol of docs/signaling.md, pre-encoded
VP8 + Opus published without encoding (`ReplayPublisher`) and the other party's frames received
without decoding (`tap_receiver`). Each party returns its `PartyMetrics`.

No Locust or gevent here: this runs on the asyncio thread and is usable from any asyncio program
(loadtests/capacity.py)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import RTCBundlePolicy, RTCPeerConnection, RTCSessionDescription

from loadtests.metrics import PartyMetrics, RtpCounts
from loadtests.synthetic_media import ReplayPublisher
from sfu.aiortc_adapter import rtc_configuration, tap_receiver

CONNECT_TIMEOUT_S = 15.0  # signaling to ICE connected; a peer that never connects is closed (notes)
FIRST_FRAME_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Media:
    """The pre-encoded payloads every party replays (made once per process)."""

    vp8: list[bytes]
    opus: list[bytes]


@dataclass
class Party:
    """Who joins: an access token (visitor, or the kiosk of the visit's housing unit)."""

    side: str  # "visitor" or "resident"
    access_token: str


class VisitRefused(Exception):
    """The API or the media server refused the join: not a media failure, but a failed visit."""


async def _join_token(http: aiohttp.ClientSession, api: str, visit_id: str, party: Party,
                      metrics: PartyMetrics) -> dict[str, Any]:
    metrics.join_started = time.monotonic()
    async with http.post(f"{api}/v1/visits/{visit_id}/join",
                         headers={"Authorization": f"Bearer {party.access_token}"}) as resp:
        body = await resp.json(content_type=None)
        metrics.join_http_s = time.monotonic() - metrics.join_started
        if resp.status != 200:
            detail = body.get("detail", "") if isinstance(body, dict) else ""
            raise VisitRefused(f"join HTTP {resp.status}: {detail}")
        result: dict[str, Any] = body
        return result


async def check_in(http: aiohttp.ClientSession, api: str, visit_id: str, kiosk_token: str) -> None:
    """S6: the resident checks in at the kiosk before the kiosk may join (repeating it is harmless)."""
    async with http.post(f"{api}/v1/visits/{visit_id}/check-in",
                         headers={"Authorization": f"Bearer {kiosk_token}"}) as resp:
        if resp.status != 200:
            body = await resp.json(content_type=None)
            detail = body.get("detail", "") if isinstance(body, dict) else ""
            raise VisitRefused(f"check-in HTTP {resp.status}: {detail}")


async def hold(http: aiohttp.ClientSession, api: str, visit_id: str, party: Party, media: Media,
               hold_seconds: float) -> PartyMetrics:
    """Join, publish and receive for `hold_seconds` after the first remote video frame (or until the
    server ends the visit), then leave. Never raises for a media failure: the metrics say what
    happened (`outcome`, `error`)."""
    metrics = PartyMetrics(side=party.side)
    pc: RTCPeerConnection | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    publishers: list[ReplayPublisher] = []
    try:
        joined = await _join_token(http, api, visit_id, party, metrics)
        url = joined.get("signaling_url") or api.replace("http", "ws", 1) + "/v1/signaling"
        metrics.signaling_started = time.monotonic()
        pc = RTCPeerConnection(rtc_configuration(joined.get("ice_servers") or []))
        audio, video = ReplayPublisher("audio", media.opus), ReplayPublisher("video", media.vp8)
        publishers = [audio, video]
        audio.publish(pc)
        video.publish(pc)
        connected = asyncio.Event()
        failed = asyncio.Event()
        got_video = asyncio.Event()

        def on_frame(kind: str, frame: Any) -> None:
            now = time.monotonic()
            metrics.bytes_received += len(frame.data)
            if kind == "video":
                if metrics.first_video is None:
                    metrics.first_video = now
                    got_video.set()
                metrics.video_arrivals.append(now)
            else:
                metrics.audio_frames += 1
                if metrics.first_audio is None:
                    metrics.first_audio = now

        @pc.on("track")
        def on_track(track: Any) -> None:
            assert pc is not None
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            kind = "video" if track.kind == "video" else "audio"
            tap_receiver(receiver, lambda frame: on_frame(kind, frame))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            assert pc is not None
            if pc.connectionState == "connected" and metrics.ice_connected is None:
                metrics.ice_connected = time.monotonic()
                connected.set()
            elif pc.connectionState in ("failed", "closed"):
                failed.set()

        ws = await http.ws_connect(url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2))
        await ws.send_json({"type": "join", "token": joined["join_token"]})
        first = json.loads((await ws.receive(timeout=10)).data)
        if first.get("type") != "joined":
            raise VisitRefused(f"signaling {first.get('code', first.get('type'))}: {first.get('message', '')}")
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
        ended: dict[str, Any] = {}
        reader = asyncio.create_task(_read(ws, pc, ended, failed))
        try:
            await asyncio.wait_for(connected.wait(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            metrics.outcome, metrics.error = "failed", f"ICE not connected within {CONNECT_TIMEOUT_S:.0f} s"
            return metrics
        for publisher in publishers:
            publisher.start()
        try:
            await asyncio.wait_for(_first_of(got_video, failed), FIRST_FRAME_TIMEOUT_S)
        except TimeoutError:
            pass
        if metrics.first_video is None:
            metrics.outcome = "failed"
            metrics.error = ended.get("message") or f"no video within {FIRST_FRAME_TIMEOUT_S:.0f} s"
            return metrics
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(failed.wait(), hold_seconds)
        if ended:
            metrics.outcome = f"ended {ended.get('reason')}"
            if ended.get("reason") != "completed":
                metrics.error = f"the server ended the visit: {ended.get('reason')} {ended.get('message', '')}"
        elif failed.is_set():
            metrics.outcome, metrics.error = "dropped", "connection or signaling lost during the visit"
        else:
            metrics.outcome = "held"
        reader.cancel()
        return metrics
    except VisitRefused as exc:
        metrics.outcome, metrics.error = "refused", str(exc)
        return metrics
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        metrics.outcome, metrics.error = "failed", f"{type(exc).__name__}: {exc}"
        return metrics
    except asyncio.CancelledError:
        metrics.outcome = metrics.outcome if metrics.outcome != "not started" else "stopped"
        raise
    finally:
        metrics.left = time.monotonic()
        if pc is not None:
            with contextlib.suppress(Exception):
                metrics.rtp = await _rtp_counts(pc)
        for publisher in publishers:
            publisher.stop()
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "leave"})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _read(ws: aiohttp.ClientWebSocketResponse, pc: RTCPeerConnection, ended: dict[str, Any],
                failed: asyncio.Event) -> None:
    """Server messages: the answer, then events until `ended` (or an error) closes the socket."""
    try:
        async for raw in ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(raw.data)
            kind = msg.get("type")
            if kind == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
            elif kind == "ended":
                ended.update(msg)
            elif kind == "error" and msg.get("code") not in ("bad-candidate", "bad-offer"):
                ended.setdefault("reason", f"error {msg.get('code')}")
                ended.setdefault("message", msg.get("message", ""))
    finally:
        failed.set()


async def _rtp_counts(pc: RTCPeerConnection) -> list[RtpCounts]:
    """RTP receiver statistics of each inbound stream (kept current by the tap, read by aiortc's
    getStats); clock rates from the negotiated codecs."""
    counts: list[RtpCounts] = []
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        codecs = getattr(transceiver, "_codecs", None) or []
        clock = codecs[0].clockRate if codecs else (90000 if transceiver.kind == "video" else 48000)
        report = await receiver.getStats()
        for stat in report.values():
            if getattr(stat, "type", "") == "inbound-rtp":
                counts.append(RtpCounts(received=int(stat.packetsReceived), lost=int(stat.packetsLost),
                                        jitter_units=int(stat.jitter), clock_rate=int(clock)))
    return counts


async def hold_visit(http: aiohttp.ClientSession, api: str, visit_id: str, visitor: Party, kiosk: Party,
                     media: Media, hold_seconds: float) -> list[PartyMetrics]:
    """Both parties at once, the kiosk checking the resident in first (S6)."""
    try:
        await check_in(http, api, visit_id, kiosk.access_token)
    except VisitRefused as exc:
        refused = [PartyMetrics(side=p.side, outcome="refused", error=str(exc)) for p in (visitor, kiosk)]
        return refused
    results = await asyncio.gather(hold(http, api, visit_id, visitor, media, hold_seconds),
                                   hold(http, api, visit_id, kiosk, media, hold_seconds))
    return list(results)


async def watch(http: aiohttp.ClientSession, api: str, visit_id: str, officer_token: str,
                seconds: float) -> PartyMetrics:
    """An officer's hidden monitor (docs/signaling.md section 7): a monitor token, four receive-only
    m-lines with max-bundle, `seconds` of both parties' video. `first_frame_s` counts from the
    monitor token request."""
    metrics = PartyMetrics(side="monitor", join_started=time.monotonic())
    pc: RTCPeerConnection | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    try:
        async with http.post(f"{api}/v1/visits/{visit_id}/monitor",
                             headers={"Authorization": f"Bearer {officer_token}"}) as resp:
            body = await resp.json(content_type=None)
            metrics.join_http_s = time.monotonic() - metrics.join_started
            if resp.status != 200:
                detail = body.get("detail", "") if isinstance(body, dict) else ""
                raise VisitRefused(f"monitor HTTP {resp.status}: {detail}")
        url = body.get("signaling_url") or api.replace("http", "ws", 1) + "/v1/signaling"
        config = rtc_configuration(body.get("ice_servers") or [])
        config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        pc = RTCPeerConnection(config)
        got_video = asyncio.Event()

        def on_frame(kind: str, frame: Any) -> None:
            metrics.bytes_received += len(frame.data)
            if kind == "video":
                now = time.monotonic()
                metrics.first_video = metrics.first_video or now
                got_video.set()

        for kind in ("audio", "video", "audio", "video"):
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            tap_receiver(transceiver.receiver, functools.partial(on_frame, kind))
        metrics.signaling_started = time.monotonic()
        ws = await http.ws_connect(url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2))
        await ws.send_json({"type": "join", "token": body["join_token"]})
        first = json.loads((await ws.receive(timeout=10)).data)
        if first.get("type") != "joined":
            raise VisitRefused(f"signaling {first.get('code', first.get('type'))}: {first.get('message', '')}")
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
        ended: dict[str, Any] = {}
        failed = asyncio.Event()
        reader = asyncio.create_task(_read(ws, pc, ended, failed))
        try:
            await asyncio.wait_for(_first_of(got_video, failed), FIRST_FRAME_TIMEOUT_S)
        except TimeoutError:
            pass
        if metrics.first_video is None:
            metrics.outcome, metrics.error = "failed", "no video on the monitor"
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(failed.wait(), seconds)
            metrics.outcome = "held"
        reader.cancel()
        return metrics
    except VisitRefused as exc:
        metrics.outcome, metrics.error = "refused", str(exc)
        return metrics
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        metrics.outcome, metrics.error = "failed", f"{type(exc).__name__}: {exc}"
        return metrics
    finally:
        metrics.left = time.monotonic()
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)
