"""A visitor on a weak link (256 kbps, the seeds' minimum) keeps the audio and gets degraded
video instead of a dropped visit.

The resident publishes ~500 kbps VP8 that does not adapt (the worst case: a publisher that
cannot go lower). The visitor's downlink is a 256 kbit/s token bucket with a 500 ms queue
(tests/support_shaped_link.py, like `tc tbf`). Measured without the SFU's video thinning the
visitor got 1-8 of 50 audio packets a second; with it the audio is whole."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests.synthetic_media import ReplayTrack
from sfu.aiortc_adapter import rtc_configuration, tap_receiver
from sfu.router import EncodedFrame
from tests.sfu.test_signaling import OPUS, VP8, Stack, connect, now
from tests.support_shaped_link import ShapedDownlink

pytest_plugins = ["tests.sfu.test_signaling"]


async def test_a_visitor_on_a_256_kbps_link_keeps_audio_and_gets_degraded_video(stack: Stack) -> None:
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=20)
    resident = await connect(stack, stack.token("weak", "resident-9", "resident", start=start, end=end))
    link = ShapedDownlink(256_000, max_delay=0.5)
    received: dict[str, list[tuple[float, EncodedFrame]]] = {"audio": [], "video": []}
    async with aiohttp.ClientSession() as session, session.ws_connect(stack.url) as ws:
        pc = RTCPeerConnection(rtc_configuration())
        try:
            pc.addTrack(ReplayTrack("audio", OPUS))
            pc.addTrack(ReplayTrack("video", VP8))

            @pc.on("track")
            def on_track(track: Any) -> None:
                receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
                frames = received[track.kind]
                tap_receiver(receiver, lambda f: frames.append((time.monotonic(), f)))

            await ws.send_json({"type": "join", "token": stack.token("weak", "user-1", "visitor", start=start,
                                                                      end=end)})
            assert (await ws.receive_json(timeout=10))["type"] == "joined"
            await pc.setLocalDescription(await pc.createOffer())
            link.apply(pc)
            await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
            while (msg := await ws.receive_json(timeout=10))["type"] != "answer":
                pass
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))

            room = stack.sfu.rooms["weak"]
            for _ in range(100):  # congestion, the visitor's REMB, thinning: within a few seconds
                to_visitor = next((c for p in room.router.producers if p.participant_id == "resident-9"
                                   and p.kind == "video" for c in p.consumers), None)
                if to_visitor is not None and to_visitor.thinning is not None and to_visitor.thinning.active:
                    break  # the visitor's REMB said its link cannot carry the resident's video
                await asyncio.sleep(0.1)
            assert to_visitor is not None and to_visitor.thinning is not None and to_visitor.thinning.active
            await asyncio.sleep(1)  # the queue built up before thinning drains
            window_start = time.monotonic()
            delivered_before = to_visitor.frames_delivered
            resident_video_before = len(resident.received["video"])
            await asyncio.sleep(5)  # well before the first probe of full video (10 s after thinning)
            window = time.monotonic() - window_start

            audio = [f for t, f in received["audio"] if t >= window_start]
            assert len(audio) >= 0.9 * 50 * window, f"audio packets {len(audio)} in {window:.1f} s"
            assert to_visitor.frames_thinned > 0  # degraded: delta frames held back...
            assert to_visitor.frames_delivered > delivered_before  # ...keyframes still forwarded
            assert link.stats.dropped > 0  # the link really was too small
            # The visit goes on, and the resident (on a good link) still gets full-rate video.
            assert not room.closed and set(room.participants) == {"visitor", "resident"}
            assert len(resident.received["video"]) - resident_video_before >= 0.8 * 30 * window
        finally:
            await pc.close()
            await resident.close()
