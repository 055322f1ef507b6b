"""WebSocket signaling (protocol in docs/signaling.md): join with a join token, one offer and its
answer, then server events (participant joined/left, warnings, ended with the reason)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from openvisit.device_check_tokens import looks_like_device_check
from openvisit.join_tokens import JoinTokenError, JoinTokenVerifier
from sfu.room import Room, RoomClosedError, Send, side_of
from sfu.router import PrivilegeViolationError
from sfu.service import Sfu
from signaling.device_check import serve_device_check
from signaling.messages import parse_message, unverified_claims

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 10.0
MAX_MESSAGE = 256 * 1024
MAX_EARLY_CANDIDATES = 64
CLOSE_TIMEOUT = 2.0


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
        # timeout: how long a close waits for the client's answer (a frozen client must not hold
        # a shutdown); heartbeat: pings notice a vanished client's socket.
        ws = web.WebSocketResponse(heartbeat=15, max_msg_size=MAX_MESSAGE, timeout=CLOSE_TIMEOUT)
        await ws.prepare(request)
        lock = asyncio.Lock()
        closing: set[asyncio.Task[Any]] = set()

        def hangup() -> None:
            """Close this socket without waiting (the room is done with this client)."""
            if not ws.closed:
                task = asyncio.get_running_loop().create_task(ws.close())
                closing.add(task)
                task.add_done_callback(closing.discard)

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                if not ws.closed:
                    await ws.send_json(message)
            if message.get("type") == "ended":  # nothing follows `ended`: close (docs/signaling.md)
                hangup()

        async def fail(code: str, message: str) -> web.WebSocketResponse:
            await send({"type": "error", "code": code, "message": message})
            await ws.close()
            return ws

        try:
            first = await ws.receive(timeout=JOIN_TIMEOUT)
        except TimeoutError:
            return await fail("join-timeout", "send a join message first")
        msg = parse_message(first)
        if msg is not None and msg.get("type") == "check":  # a device check (section 8), never a visit
            return await serve_device_check(ws, sfu, verifier, msg.get("token"), now=now, send=send, fail=fail,
                                            add_candidate=_add_candidate, source=request.remote)
        token, resume = (msg.get("token"), msg.get("resume")) if msg is not None else (None, None)
        if msg is None or msg.get("type") != "join" or not (isinstance(token, str) or isinstance(resume, str)):
            return await fail("bad-message", "the first message must be {type: join, token}, {type: join, resume} "
                                             "or {type: check, token}")
        if isinstance(token, str):
            try:
                claims = verifier.verify(token, now())  # S1: visit, participant, window
            except JoinTokenError as exc:
                if looks_like_device_check(token):  # names no visit: refused, nothing to audit it against
                    log.warning("a device-check token was presented to join a visit (from %s)", request.remote)
                    return await fail("bad-token", "a device-check token never joins a visit")
                claimed = unverified_claims(token)
                if claimed is not None:  # audited against the visit it names, as an attempt
                    await sfu.report_refusal(claimed[0], claimed[1], f"bad token: {exc}", source=request.remote)
                return await fail("bad-token", str(exc))
        else:  # S5: a participant who dropped takes its place again, without the control API
            resumed = sfu.state.redeem(str(resume), now())
            if resumed is None:
                return await fail("bad-resume", "this resume token is unknown or expired; ask for a new join token")
            claims = resumed
        room = sfu.room_for(claims)  # after a node restart, a resume re-creates the room from its claims
        if room is None:
            if claims.participant_role == "monitor" and claims.visit_id not in sfu.ended:
                return await fail("not-live", "this visit is not live on this media server")
            return await fail("visit-ended", "this visit has ended (rule S2)")
        if isinstance(token, str):
            if not await sfu.claim_token(claims):
                await sfu.report_refusal(claims.visit_id, claims.participant_id, "join token replayed",
                                         source=request.remote, verified=True)
                return await fail("token-used", "this join token was already used; rejoin with your resume token "
                                                "or ask for a new join token")
            if claims.participant_role != "monitor":
                resume = await sfu.state.grant(claims)  # valid until the visit's end (S5)
        if claims.participant_role == "monitor":
            return await _monitor(ws, room, claims.participant_id, send, fail)
        side = side_of(claims.participant_role)
        await send({"type": "joined", "visit_id": claims.visit_id, "side": side,
                    "starts_at": claims.visit_starts_at.isoformat(), "ends_at": claims.visit_ends_at.isoformat(),
                    "server_time": now().isoformat(),
                    "others": [s for s in room.participants if s != side], "resume_token": resume})
        joined = False
        early_candidates: list[dict[str, Any]] = []  # trickled before the offer was answered
        try:
            async for raw in ws:
                msg = parse_message(raw)
                if msg is None:
                    await send({"type": "error", "code": "bad-message", "message": "messages are JSON objects"})
                    continue
                if msg.get("type") == "offer" and isinstance(msg.get("sdp"), str):
                    try:
                        answer = await room.join(claims.participant_id, claims.participant_role, msg["sdp"], send,
                                                 hangup=hangup)
                    except RoomClosedError as exc:
                        return await fail("visit-ended", str(exc))
                    except Exception as exc:  # a malformed SDP must not take the server down
                        log.warning("offer from %s failed: %s", claims.participant_id, exc)
                        await send({"type": "error", "code": "bad-offer", "message": str(exc)})
                        continue
                    joined = True
                    await send({"type": "answer", "sdp": answer})
                    for early in early_candidates:
                        await _add_candidate(functools.partial(room.add_candidate, side), early, send)
                    early_candidates.clear()
                elif msg.get("type") in ("candidate", "end-of-candidates"):
                    if joined:
                        await _add_candidate(functools.partial(room.add_candidate, side), msg, send)
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


async def _monitor(ws: web.WebSocketResponse, room: Room, monitor_id: str, send: Send,
                   fail: Callable[[str, str], Awaitable[web.WebSocketResponse]]) -> web.WebSocketResponse:
    """An officer's hidden, receive-only session: an offer with four recv-only m-lines (visitor
    audio, video, resident audio, video), answered once; then only `ended` arrives."""
    await send({"type": "joined", "visit_id": room.visit_id, "side": "monitor",
                "starts_at": room.starts_at.isoformat(), "ends_at": room.ends_at.isoformat(),
                "others": list(room.participants)})
    joined = False
    try:
        async for raw in ws:
            msg = parse_message(raw)
            kind = None if msg is None else msg.get("type")
            if msg is not None and kind == "offer" and isinstance(msg.get("sdp"), str) and not joined:
                try:
                    answer = await room.add_monitor(monitor_id, msg["sdp"], send)
                except PrivilegeViolationError:
                    return await fail("privileged", "a privileged visit is never monitored (rule P1); "
                                                    "this attempt was recorded")
                except RoomClosedError as exc:
                    return await fail("visit-ended", str(exc))
                except Exception as exc:  # a malformed SDP must not take the server down
                    log.warning("monitor offer from %s failed: %s", monitor_id, exc)
                    await send({"type": "error", "code": "bad-offer", "message": str(exc)})
                    continue
                joined = True
                await send({"type": "answer", "sdp": answer})
            elif msg is not None and kind in ("candidate", "end-of-candidates") and joined:
                await _add_candidate(functools.partial(room.add_monitor_candidate, monitor_id), msg, send)
            elif msg is not None and kind == "leave":
                break
    finally:
        if joined:
            session = room.monitors.get(monitor_id)
            if session is not None and session.send is send:
                await room.remove_monitor(monitor_id)
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


CANDIDATE_SHAPE = "candidate is {candidate: string, sdpMid: string, sdpMLineIndex: integer}"


def _candidate_fields(msg: dict[str, Any]) -> tuple[str, str | None, int | None] | None:
    """`{type: candidate, candidate: {candidate, sdpMid, sdpMLineIndex}}` as a browser's
    RTCIceCandidate.toJSON() gives it; `end-of-candidates` or an empty one ends them. None if malformed."""
    body: Any = {"candidate": ""} if msg.get("type") == "end-of-candidates" else msg.get("candidate")
    if body is None:
        body = {"candidate": ""}
    if not isinstance(body, dict):
        return None
    text, mid, index = body.get("candidate"), body.get("sdpMid"), body.get("sdpMLineIndex")
    if (not isinstance(text, str) or not (mid is None or isinstance(mid, str))
            or not (index is None or (isinstance(index, int) and not isinstance(index, bool)))):
        return None
    return text, mid, index


async def _add_candidate(add: Callable[[str, str | None, int | None], Awaitable[None]], msg: dict[str, Any],
                         send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Trickle ICE into a participant's or a monitor's connection; a bad candidate is answered, not fatal."""
    parsed = _candidate_fields(msg)
    if parsed is None:
        await send({"type": "error", "code": "bad-candidate", "message": CANDIDATE_SHAPE})
        return
    try:
        await add(*parsed)
    except (ValueError, IndexError) as exc:
        await send({"type": "error", "code": "bad-candidate", "message": f"unusable candidate: {exc}"})
