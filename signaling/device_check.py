"""The device check over signaling (docs/signaling.md, section 8): `{type: check, token}` opens
a loopback session (sfu/device_check.py), then one offer and its answer, trickled candidates,
and `ended` when the check's time is up. A visit's join token never opens a check: it is refused
and, as any refused attempt on a visit, reported against that visit (audited)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from openvisit.device_check_tokens import DeviceCheckTokenError, DeviceCheckTokenVerifier
from openvisit.join_tokens import JoinTokenError, JoinTokenVerifier
from sfu.device_check import CheckRefusedError
from sfu.service import Sfu
from signaling.messages import parse_message, unverified_claims

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
Fail = Callable[[str, str], Awaitable[web.WebSocketResponse]]
Candidates = Callable[[Callable[[str, str | None, int | None], Awaitable[None]], dict[str, Any], Send],
                      Awaitable[None]]


async def serve_device_check(ws: web.WebSocketResponse, sfu: Sfu, verifier: JoinTokenVerifier, token: Any, *,
                             now: Callable[[], datetime], send: Send, fail: Fail, add_candidate: Candidates,
                             source: str | None) -> web.WebSocketResponse:
    if not isinstance(token, str):
        return await fail("bad-message", "a check starts with {type: check, token}")
    try:
        claims = DeviceCheckTokenVerifier(verifier.public_key).verify(token, now())
    except DeviceCheckTokenError as exc:
        await _report_visit_token(sfu, verifier, token, now(), source)
        return await fail("bad-token", str(exc))
    try:
        session = sfu.device_checks.open(claims, send, now())
    except CheckRefusedError as exc:
        return await fail(exc.code, str(exc))
    log.info("device check %s opened for %s", claims.token_id, claims.account)
    await send({"type": "check_joined", "max_seconds": claims.max_seconds, "server_time": now().isoformat()})
    answered = False
    early: list[dict[str, Any]] = []  # candidates trickled before the offer was answered
    try:
        async for raw in ws:
            msg = parse_message(raw)
            kind = None if msg is None else msg.get("type")
            if msg is None:
                await send({"type": "error", "code": "bad-message", "message": "messages are JSON objects"})
            elif kind == "offer" and isinstance(msg.get("sdp"), str) and not answered:
                try:
                    answer = await session.answer(msg["sdp"])
                except CheckRefusedError as exc:
                    return await fail(exc.code, str(exc))
                except Exception as exc:  # a malformed SDP must not take the server down
                    log.warning("device-check offer from %s failed: %s", claims.account, exc)
                    await send({"type": "error", "code": "bad-offer", "message": str(exc)})
                    continue
                answered = True
                await send({"type": "answer", "sdp": answer})
                for candidate in early:
                    await add_candidate(session.add_candidate, candidate, send)
                early.clear()
            elif kind in ("candidate", "end-of-candidates"):
                if answered:
                    await add_candidate(session.add_candidate, msg, send)
                elif len(early) < 64:
                    early.append(msg)
            elif kind == "leave":
                break
            else:
                await send({"type": "error", "code": "bad-message", "message": f"unknown message type {kind!r}"})
    finally:
        await session.end("left", "the check was left")
        with contextlib.suppress(Exception):
            await ws.close()
    return ws


async def _report_visit_token(sfu: Sfu, verifier: JoinTokenVerifier, token: str, at: datetime,
                              source: str | None) -> None:
    """A token that names a visit, offered to open a check, is a refused attempt on that visit:
    reported (and audited) as a refused join is, proven (`verified`) when its signature holds."""
    try:
        claims = verifier.verify(token, at)
    except JoinTokenError:
        named = unverified_claims(token)
        if named is not None:
            await sfu.report_refusal(named[0], named[1], "a token that is not a device-check token was presented "
                                                         "to open a device check", source=source)
        return
    await sfu.report_refusal(claims.visit_id, claims.participant_id,
                             "the visit's join token was presented to open a device check", source=source,
                             verified=True)
