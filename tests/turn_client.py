"""A visit participant for the TURN tests (tests/test_turn_relay.py), run inside a network
namespace with `ip netns exec NS .venv/bin/python -m tests.turn_client ...`.

It asks the control API for a join token (the answer carries the ICE servers, the minted TURN
credential among them), joins over the signaling WebSocket, publishes pre-encoded VP8 and Opus,
counts the other party's frames without decoding them, and prints JSON lines: `joined`,
`pc_state`, `pair` (the nominated ICE pair: local and remote candidate types and addresses,
and how the relay is reached), `stats` every second, `exit`. It exits `--hold` seconds after
its first video frame (or at `--max-seconds`).

aiortc uses one TURN URL (the first it supports) where a browser tries them all: `--turn`
picks the one a browser on that network would end up using (`tcp`, `tls` or `udp`);
`--turn none` gives the peer no relay at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests.synthetic_media import ReplayTrack, encode_opus, encode_vp8
from sfu.aiortc_adapter import contract, restrict_host_candidates, rtc_configuration, tap_receiver
from sfu.router import EncodedFrame

SCHEMES = {"udp": ("turn:", "udp"), "tcp": ("turn:", "tcp"), "tls": ("turns:", "tcp")}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"t": time.time(), "event": event, **fields}), flush=True)


def transport_of(url: str) -> tuple[str, str]:
    scheme = "turns:" if url.startswith("turns:") else "turn:" if url.startswith("turn:") else url.split(":")[0]
    transport = url.split("?transport=")[1] if "?transport=" in url else "udp"
    return scheme, transport


def choose_servers(servers: list[dict[str, Any]], turn: str) -> list[dict[str, Any]]:
    """The static servers, and the TURN entry narrowed to the URL of the chosen transport."""
    chosen: list[dict[str, Any]] = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        if not any(u.startswith(("turn:", "turns:")) for u in urls):
            chosen.append({k: v for k, v in server.items() if v is not None})
            continue
        if turn == "none":
            continue
        wanted = [u for u in urls if transport_of(u) == SCHEMES[turn]]
        if wanted:
            chosen.append({"urls": wanted[:1], "username": server["username"], "credential": server["credential"]})
    return chosen


def nominated_pair(pc: RTCPeerConnection) -> dict[str, Any] | None:
    """The pair ICE nominated (aioice's state, read once connected)."""
    transport = pc.getTransceivers()[0].sender.transport.transport
    pair = contract.nominated_pairs(contract.ice_connection(transport)).get(1)
    if pair is None:
        return None
    inner = contract.turn_inner_protocol(pair.protocol.transport)
    return {"local_type": pair.local_candidate.type, "local": [pair.local_candidate.host, pair.local_candidate.port],
            "remote_type": pair.remote_candidate.type,
            "remote": [pair.remote_candidate.host, pair.remote_candidate.port],
            "relay_protocol": type(inner).__name__ if inner is not None else None,
            "relay_tls": bool(inner is not None and inner.transport.get_extra_info("sslcontext") is not None)}


async def run(args: argparse.Namespace) -> dict[str, int]:
    received = {"audio": 0, "video": 0}
    first_video = asyncio.Event()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
        async with http.post(f"{args.api}/v1/visits/{args.visit}/join",
                             headers={"Authorization": f"Bearer {args.token}"}) as resp:
            joined = await resp.json(content_type=None)
            if resp.status != 200:
                emit("join_refused", status=resp.status, body=joined)
                return received
        servers = choose_servers(joined["ice_servers"], args.turn)
        emit("ice_servers", servers=[{"urls": s["urls"], "username": s.get("username")} for s in servers])
        pc = RTCPeerConnection(rtc_configuration(servers))
        pc.addTrack(ReplayTrack("audio", encode_opus(packets=50)))
        pc.addTrack(ReplayTrack("video", encode_vp8(frames=60, width=320, height=240)))

        def on_frame(kind: str, _frame: EncodedFrame) -> None:
            received[kind] += 1
            if kind == "video":
                first_video.set()

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            kind = "video" if track.kind == "video" else "audio"
            tap_receiver(receiver, lambda frame: on_frame(kind, frame))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            emit("pc_state", state=pc.connectionState)
            if pc.connectionState == "connected":
                emit("pair", **(nominated_pair(pc) or {}))

        async def stats() -> None:
            while True:
                await asyncio.sleep(1)
                emit("stats", frames=dict(received))

        ticker = asyncio.create_task(stats())
        ws = await http.ws_connect(joined["signaling_url"], heartbeat=None)
        try:
            await ws.send_json({"type": "join", "token": joined["join_token"]})
            first = json.loads((await ws.receive(timeout=10)).data)
            emit("joined" if first.get("type") == "joined" else "refused", body=first)
            if first.get("type") != "joined":
                return received
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})

            async def read() -> None:
                async for raw in ws:
                    if raw.type != aiohttp.WSMsgType.TEXT:
                        continue
                    msg = json.loads(raw.data)
                    if msg.get("type") == "answer":
                        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                    emit("message", type=msg.get("type"))

            reader = asyncio.create_task(read())
            await first_video.wait()
            emit("first_video")
            await asyncio.sleep(args.hold)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            emit("pair_at_end", **(nominated_pair(pc) or {}))
        finally:
            ticker.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)
    return received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--visit", required=True)
    parser.add_argument("--address", required=True, help="the one address to gather host candidates on")
    parser.add_argument("--turn", choices=["udp", "tcp", "tls", "none"], default="none")
    parser.add_argument("--hold", type=float, default=3.0, help="seconds to stay after the first video frame")
    parser.add_argument("--max-seconds", type=float, default=40.0)
    args = parser.parse_args()
    restrict_host_candidates([args.address])
    received: dict[str, int] = {}
    reason = "done"
    try:
        received = asyncio.run(asyncio.wait_for(run(args), args.max_seconds))
    except TimeoutError:
        reason = "time limit"
    emit("exit", reason=reason, frames=received)


if __name__ == "__main__":
    main()
