"""A visit participant in its own process: a real aiortc WebRTC client, as a browser or a kiosk.

    python -m tests.faults.participant --api http://127.0.0.1:8080 --token ACCESS --visit ID [--rejoin | --give-up]

It asks `POST /v1/visits/{id}/join` for a join token, connects to the signaling URL it names,
publishes pre-encoded VP8 and Opus (loadtests/synthetic_media.py), receives the other party's
frames without decoding (sfu.aiortc_adapter.tap_receiver), and prints one JSON line per thing
that happens, flushed at once, each with `t` (wall time, time.time()) and `event`:

    joined, answer, message (every server message: participant_joined, participant_left, warning,
    ended, error; also as `server`), first_frame (per kind and attempt), stats (every second: frames
    received per kind, total and in this attempt), socket_closed, pc_state, rejoining,
    join_refused (the API said no), visit_over, exit

`--rejoin`: when the socket closes or the peer connection fails without an `ended`, ask for a new
join token and reconnect, with backoff, until it works or the API says the visit is over.
`--give-up`: exit when the connection drops. Neither: wait for `ended` (or the time limit).
Everything is bounded by `--max-seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from typing import Any

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription

from loadtests.synthetic_media import ReplayTrack, encode_opus, encode_vp8
from sfu.aiortc_adapter import restrict_host_candidates, rtc_configuration, tap_receiver
from sfu.router import EncodedFrame

SERVER_MESSAGES = {"participant_joined", "participant_left", "warning", "ended", "error"}


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"t": time.time(), "event": event, **fields}), flush=True)


class JoinRefused(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body

    @property
    def visit_over(self) -> bool:
        """409 not-joinable (ended, failed, ...) or past the end: asking again will not help (S2)."""
        slug = str(self.body.get("type", "")) + " " + str(self.body.get("code", "")) + " " + str(
            self.body.get("slug", ""))
        detail = str(self.body.get("detail", ""))
        return self.status in (404, 403) or (self.status == 409 and (
            "not-joinable" in slug or "(rule S2)" in detail or "cannot be joined" in detail))


class Participant:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api = args.api.rstrip("/")
        self.frames = {"audio": 0, "video": 0}
        self.attempt_frames = {"audio": 0, "video": 0}
        self.attempt = 0
        self.ended: dict[str, Any] | None = None
        self.first_frame_seen: set[str] = set()

    async def join_token(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.post(f"{self.api}/v1/visits/{self.args.visit}/join",
                             headers={"Authorization": f"Bearer {self.args.token}"}) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise JoinRefused(resp.status, body if isinstance(body, dict) else {})
            result: dict[str, Any] = body
            return result

    def on_frame(self, kind: str, frame: EncodedFrame) -> None:
        self.frames[kind] += 1
        self.attempt_frames[kind] += 1
        if kind not in self.first_frame_seen:
            self.first_frame_seen.add(kind)
            emit("first_frame", kind=kind, attempt=self.attempt, keyframe=bool(frame.keyframe))

    async def session(self, http: aiohttp.ClientSession, joined: dict[str, Any],
                      video: list[bytes], audio: list[bytes]) -> str:
        """One connection, until it ends; returns `ended`, `dropped` (socket or ICE gone) or `refused`."""
        url = joined.get("signaling_url") or self.api.replace("http", "ws", 1) + "/v1/signaling"
        self.attempt_frames = {"audio": 0, "video": 0}
        self.first_frame_seen = set()
        pc = RTCPeerConnection(rtc_configuration(joined.get("ice_servers") or []))
        pc.addTrack(ReplayTrack("audio", audio))
        pc.addTrack(ReplayTrack("video", video))
        dropped = asyncio.Event()

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            kind = "video" if track.kind == "video" else "audio"
            emit("track", kind=kind, attempt=self.attempt)
            tap_receiver(receiver, lambda frame: self.on_frame(kind, frame))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            emit("pc_state", state=pc.connectionState, attempt=self.attempt)
            if pc.connectionState in ("failed", "closed"):
                dropped.set()

        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            try:
                ws = await http.ws_connect(url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(ws_close=2))
            except (aiohttp.ClientError, OSError) as exc:
                emit("socket_closed", attempt=self.attempt, phase="connect", error=str(exc))
                return "dropped"
            await ws.send_json({"type": "join", "token": joined["join_token"]})
            first = await ws.receive(timeout=10)
            if first.type != aiohttp.WSMsgType.TEXT:
                emit("socket_closed", attempt=self.attempt, phase="join", ws_type=str(first.type))
                return "dropped"
            msg = json.loads(first.data)
            if msg.get("type") != "joined":
                emit("message", type=msg.get("type"), body=msg, attempt=self.attempt)
                return "ended" if msg.get("code") == "visit-ended" else "refused"
            emit("joined", attempt=self.attempt, side=msg.get("side"), others=msg.get("others"),
                 server_time=msg.get("server_time"))
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send_json({"type": "offer", "sdp": pc.localDescription.sdp})
            reader = asyncio.create_task(self._read(ws, pc))
            dropper = asyncio.create_task(dropped.wait())
            done, _ = await asyncio.wait({reader, dropper}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                return reader.result()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            emit("socket_closed", attempt=self.attempt, phase="peer-connection", state=pc.connectionState)
            return "dropped"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            emit("socket_closed", attempt=self.attempt, phase="error", error=f"{type(exc).__name__}: {exc}")
            return "dropped"
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)
            if ws is not None and not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 3)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse, pc: RTCPeerConnection) -> str:
        async for raw in ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(raw.data)
            kind = msg.get("type")
            if kind == "answer":
                await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="answer"))
                emit("answer", attempt=self.attempt)
                continue
            if kind in SERVER_MESSAGES:
                emit(kind, attempt=self.attempt, **{k: v for k, v in msg.items() if k != "type"})
            else:
                emit("message", attempt=self.attempt, type=kind, body=msg)
            if kind == "ended":
                self.ended = msg
        # The server closed the socket (or the connection broke).
        emit("socket_closed", attempt=self.attempt, phase="socket", close_code=ws.close_code,
             after_ended=self.ended is not None)
        return "ended" if self.ended is not None else "dropped"

    async def stats(self) -> None:
        while True:
            await asyncio.sleep(1)
            emit("stats", attempt=self.attempt, frames=dict(self.frames), attempt_frames=dict(self.attempt_frames))

    async def run(self) -> int:
        video = encode_vp8(frames=60, width=320, height=240)
        audio = encode_opus(packets=50)
        stats = asyncio.create_task(self.stats())
        backoff = 0.25
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                while True:
                    self.attempt += 1
                    self.attempt_frames = {"audio": 0, "video": 0}
                    if self.attempt > 1:
                        emit("rejoining", attempt=self.attempt)
                    try:
                        joined = await self.join_token(http)
                    except JoinRefused as exc:
                        emit("join_refused", attempt=self.attempt, status=exc.status, body=exc.body)
                        if exc.visit_over or not self.args.rejoin:
                            emit("visit_over", attempt=self.attempt, status=exc.status)
                            return 0 if exc.visit_over else 3
                        outcome = "refused"
                    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                        emit("join_refused", attempt=self.attempt, status=None, error=f"{type(exc).__name__}: {exc}")
                        if not self.args.rejoin:
                            return 4
                        outcome = "refused"
                    else:
                        outcome = await self.session(http, joined, video, audio)
                    if outcome == "ended":
                        return 0
                    if self.args.give_up or not self.args.rejoin:
                        return 1
                    if self.attempt_frames["video"]:
                        backoff = 0.25  # that connection worked: start over quickly
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        finally:
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="the control API's base URL")
    parser.add_argument("--token", required=True, help="a bearer access token (visitor or kiosk)")
    parser.add_argument("--visit", required=True)
    parser.add_argument("--label", default="participant")
    parser.add_argument("--addresses", default="127.0.0.1", help="comma-separated ICE host addresses")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--rejoin", action="store_true")
    mode.add_argument("--give-up", action="store_true")
    args = parser.parse_args()
    restrict_host_candidates(args.addresses.split(","))
    participant = Participant(args)
    emit("start", label=args.label, visit=args.visit, rejoin=args.rejoin, give_up=args.give_up)
    code = 5
    reason = "time limit"

    async def bounded() -> int:
        return await asyncio.wait_for(participant.run(), args.max_seconds)

    try:
        code = asyncio.run(bounded())
        reason = "ended" if participant.ended else ("finished" if code == 0 else "dropped")
    except TimeoutError:
        code, reason = 5, "time limit"
    except KeyboardInterrupt:
        code, reason = 130, "interrupted"
    emit("exit", code=code, reason=reason, frames=participant.frames, ended=participant.ended)
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
