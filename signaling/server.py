"""WebSocket signaling (protocol in docs/signaling.md): join with a join token, one offer and its
answer, then server events (participant joined/left, warnings, ended with the reason)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import WSMsgType, web

from openvisit.join_tokens import JoinTokenError, JoinTokenVerifier
from sfu.room import Room, RoomClosedError, Side, side_of
from sfu.service import Sfu

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 10.0
MAX_MESSAGE = 256 * 1024
MAX_EARLY_CANDIDATES = 64


def create_signaling_app(sfu: Sfu, verifier: JoinTokenVerifier, now: Callable[[], datetime]) -> web.Application:
    """A standalone signaling service (a media node of its own)."""
    app = web.Application()
    app.router.add_get("/v1/signaling", signaling_handler(lambda: sfu, lambda: verifier, now))
    return app


def signaling_handler(get_sfu: Callable[[], Sfu], get_verifier: Callable[[], JoinTokenVerifier],
                      now: Callable[[], datetime]) -> Callable[[web.Request], Any]:
    """The WebSocket handler; the getters let an application build the SFU at startup."""

    async def signaling(request: web.Request) -> web.WebSocketResponse:
        sfu, verifier = get_sfu(), get_verifier()
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE)
        await ws.prepare(request)
        lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                if not ws.closed:
                    await ws.send_json(message)

        async def fail(code: str, message: str) -> web.WebSocketResponse:
            await send({"type": "error", "code": code, "message": message})
            await ws.close()
            return ws

        try:
            first = await ws.receive(timeout=JOIN_TIMEOUT)
        except TimeoutError:
            return await fail("join-timeout", "send a join message first")
        msg = _parse(first)
        if msg is None or msg.get("type") != "join" or not isinstance(msg.get("token"), str):
            return await fail("bad-message", "the first message must be {type: join, token}")
        try:
            claims = verifier.verify(msg["token"], now())  # S1: visit, participant, window
        except JoinTokenError as exc:
            return await fail("bad-token", str(exc))
        room = sfu.room_for(claims)
        if room is None:
            return await fail("visit-ended", "this visit has ended (rule S2)")
        side = side_of(claims.participant_role)
        await send({"type": "joined", "visit_id": claims.visit_id, "side": side,
                    "starts_at": claims.visit_starts_at.isoformat(), "ends_at": claims.visit_ends_at.isoformat(),
                    "server_time": now().isoformat(),
                    "others": [s for s in room.participants if s != side]})
        joined = False
        early_candidates: list[dict[str, Any]] = []  # trickled before the offer was answered
        try:
            async for raw in ws:
                msg = _parse(raw)
                if msg is None:
                    await send({"type": "error", "code": "bad-message", "message": "messages are JSON objects"})
                    continue
                if msg.get("type") == "offer" and isinstance(msg.get("sdp"), str):
                    try:
                        answer = await room.join(claims.participant_id, claims.participant_role, msg["sdp"], send)
                    except RoomClosedError as exc:
                        return await fail("visit-ended", str(exc))
                    except Exception as exc:  # a malformed SDP must not take the server down
                        log.warning("offer from %s failed: %s", claims.participant_id, exc)
                        await send({"type": "error", "code": "bad-offer", "message": str(exc)})
                        continue
                    joined = True
                    await send({"type": "answer", "sdp": answer})
                    for early in early_candidates:
                        await _add_candidate(room, side, early, send)
                    early_candidates.clear()
                elif msg.get("type") in ("candidate", "end-of-candidates"):
                    if joined:
                        await _add_candidate(room, side, msg, send)
                    elif len(early_candidates) < MAX_EARLY_CANDIDATES:
                        early_candidates.append(msg)
                elif msg.get("type") == "leave":
                    break
                else:
                    unknown = f"unknown message type {msg.get('type')!r}"
                    await send({"type": "error", "code": "bad-message", "message": unknown})
        finally:
            if joined and not room.closed:
                participant = room.participants.get(side)
                if participant is not None and participant.send is send:
                    await room.leave(side)
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    return signaling


async def _add_candidate(room: Room, side: Side, msg: dict[str, Any],
                         send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Trickle ICE: `{type: candidate, candidate: {candidate, sdpMid, sdpMLineIndex}}` as a
    browser's RTCIceCandidate.toJSON() gives it; `end-of-candidates` or an empty one ends them."""
    body: Any = {"candidate": ""} if msg.get("type") == "end-of-candidates" else msg.get("candidate")
    if body is None:
        body = {"candidate": ""}
    text, mid, index = (body.get("candidate"), body.get("sdpMid"), body.get("sdpMLineIndex")) \
        if isinstance(body, dict) else (None, None, None)
    if (not isinstance(text, str) or not (mid is None or isinstance(mid, str))
            or not (index is None or (isinstance(index, int) and not isinstance(index, bool)))):
        await send({"type": "error", "code": "bad-candidate",
                    "message": "candidate is {candidate: string, sdpMid: string, sdpMLineIndex: integer}"})
        return
    try:
        await room.add_candidate(side, text, mid, index)
    except (ValueError, IndexError) as exc:
        await send({"type": "error", "code": "bad-candidate", "message": f"unusable candidate: {exc}"})


def _parse(message: Any) -> dict[str, Any] | None:
    if message.type != WSMsgType.TEXT:
        return None
    try:
        value = json.loads(message.data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
