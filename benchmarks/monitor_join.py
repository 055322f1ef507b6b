"""Monitor join latency: how long an officer waits to see a live visit.

A two-party social visit runs through signaling and the SFU on loopback; each party is an aiortc
client that really encodes a live 640x480 camera (so, like a browser, it sends a keyframe only
when asked, plus rarely on its own) and replays pre-encoded Opus. A monitor then joins,
receive-only, again and again; each time we measure from sending the join message to the first
decodable (key)frame of both parties' video. The SFU asks the publishers for a keyframe when
the monitor's consumers attach.

    .venv/bin/python benchmarks/monitor_join.py [--joins 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from control_api.app import start_site
from loadtests.synthetic_media import ReplayTrack, SyntheticCamera, encode_opus
from openvisit.join_tokens import JoinTokenSigner, JoinTokenVerifier
from sfu.aiortc_adapter import restrict_host_candidates, rtc_configuration, tap_receiver
from sfu.service import Sfu
from signaling.server import create_signaling_app
from tests.support_events import InProcessEventSink


def now() -> datetime:
    return datetime.now(UTC)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def participant(url: str, token: str, opus: list[bytes]) -> tuple[Any, Any, Any]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url)
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTrack(ReplayTrack("audio", opus))
    pc.addTrack(SyntheticCamera())
    await ws.send_json({"type": "join", "token": token})
    await ws.receive_json()
    await pc.setLocalDescription(await pc.createOffer())
    await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
    while (msg := await ws.receive_json())["type"] != "answer":
        pass
    await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
    return session, ws, pc


async def monitor_once(url: str, token: str) -> float:
    started = time.monotonic()
    first: dict[int, float] = {}
    both = asyncio.Event()
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        for kind in ("audio", "video", "audio", "video"):
            pc.addTransceiver(kind, direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            index, transceiver = next((i, t) for i, t in enumerate(pc.getTransceivers())
                                      if t.receiver.track is track)

            def on_frame(frame: Any) -> None:
                if index in (1, 3) and frame.keyframe and index not in first:
                    first[index] = time.monotonic()
                    if len(first) == 2:
                        both.set()

            tap_receiver(transceiver.receiver, on_frame)

        await ws.send_json({"type": "join", "token": token})
        await ws.receive_json()
        await pc.setLocalDescription(await pc.createOffer())
        await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
        msg = await ws.receive_json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
        await asyncio.wait_for(both.wait(), 10)
        await ws.send_json({"type": "leave"})
        await pc.close()
    return max(first.values()) - started


async def main(joins: int) -> None:
    restrict_host_candidates(["127.0.0.1"])
    key = Ed25519PrivateKey.generate()
    signer = JoinTokenSigner(key)
    sfu = Sfu(InProcessEventSink(), now)
    runner, port = await start_site(create_signaling_app(sfu, JoinTokenVerifier(key.public_key()), now),
                                    "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{port}/v1/signaling"
    start, end = now() - timedelta(seconds=5), now() + timedelta(hours=1)

    def token(who: str, role: str) -> str:
        issued, _ = signer.issue(visit_id="visit", participant_id=who, participant_role=role, visit_type="social",
                                 visit_starts_at=start, visit_ends_at=end, not_before=start - timedelta(minutes=10),
                                 expires_at=end)
        return issued

    opus = encode_opus(packets=150)
    parties = [await participant(url, token(f"{role}-1", role), opus) for role in ("visitor", "resident")]
    await asyncio.sleep(3)
    latencies = []
    for n in range(joins):
        latencies.append(await monitor_once(url, token(f"officer-{n}", "monitor")) * 1000)
        await asyncio.sleep(0.3)
    print(f"monitor join to first keyframe of both parties' video, {joins} joins: "
          f"p50 {statistics.median(latencies):.0f} ms, p95 {pct(latencies, 0.95):.0f} ms, max {max(latencies):.0f} ms")
    for session, ws, pc in parties:
        await pc.close()
        await ws.close()
        await session.close()
    await sfu.close()
    await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="monitor join latency")
    parser.add_argument("--joins", type=int, default=20)
    uvloop.run(main(parser.parse_args().joins))
