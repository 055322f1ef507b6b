"""Refused join attempts (issue 12): audited as attempts from an address, a claimed identity never
recorded as an actor, and rate-limited per source so nobody can flood the audit log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from control_api.db.models import AuditEntry
from openvisit.join_tokens import JoinTokenSigner
from sfu.service import REFUSALS_PER_MINUTE
from tests.sfu.test_signaling import Stack, now, stack  # noqa: F401  (fixture)
from tests.support import Api
from tests.support_visits import report, seed_visit, seed_world


def _forged(visit: str, subject: str) -> str:
    token, _ = JoinTokenSigner(Ed25519PrivateKey.generate()).issue(
        visit_id=visit, participant_id=subject, participant_role="visitor", visit_type="privileged",
        visit_starts_at=now(), visit_ends_at=now() + timedelta(minutes=5),
        not_before=now() - timedelta(minutes=1), expires_at=now() + timedelta(minutes=5))
    return token


async def _attempt(stack: Stack, token: str) -> str:  # noqa: F811
    async with aiohttp.ClientSession() as http, http.ws_connect(stack.url) as ws:
        await ws.send_json({"type": "join", "token": token})
        answer: dict[str, str] = await ws.receive_json(timeout=5)
        return answer["code"]


async def test_forged_attempts_are_reported_with_their_source_unverified_and_rate_limited(
        stack: Stack) -> None:  # noqa: F811
    stack.sfu.refusal_window = 1.0
    attempts = REFUSALS_PER_MINUTE + 15
    codes = [await _attempt(stack, _forged("visit-p", "probe-intruder")) for _ in range(attempts)]
    assert set(codes) == {"bad-token"}
    refused = [e for e in stack.events.events if e.kind == "join_refused"]
    assert len(refused) == REFUSALS_PER_MINUTE  # the rest counted, not reported one by one
    assert all(e.source == "127.0.0.1" and e.verified is False for e in refused)
    await asyncio.sleep(1.1)
    await _attempt(stack, _forged("visit-p", "probe-intruder"))  # the next window: the summary first
    summary = [e for e in stack.events.events if e.kind == "join_refused"][REFUSALS_PER_MINUTE]
    assert summary.detail is not None and summary.detail.startswith("15 more refused attempts from 127.0.0.1")


async def test_an_unverified_identity_is_never_written_as_the_actor(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-5))
    await report(api, v["id"], "join_refused", api.ctx.clock.now(), actor="probe-intruder",
                 detail="bad token: signature", source="198.51.100.7", verified=False)
    await report(api, v["id"], "join_refused", api.ctx.clock.now(), actor="user-1", detail="join token replayed",
                 source="198.51.100.8", verified=True)
    async with api.ctx.sessions() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.visit_id == v["id"])
                                      .order_by(AuditEntry.seq))).all()
    forged, replayed = [(r.actor_id, r.detail) for r in rows if r.action == "media.join_refused"]
    assert forged[0] is None and forged[1]["claimed_identity"] == "probe-intruder"
    assert forged[1]["identity_verified"] is False and forged[1]["client_address"] == "198.51.100.7"
    assert replayed[0] == "user-1" and replayed[1]["identity_verified"] is True
