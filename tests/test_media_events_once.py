"""Each media event is applied once by its event id, even when two deliveries of the same id race
(an outbox retrying while its earlier attempt is still being applied, issue 11): every delivery
is answered 2xx, exactly one with `duplicate: false`, and the outcome and money move once (S6,
M8). On SQLite and PostgreSQL (the `api` fixture runs both)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from control_api.db.models import LedgerTransaction, VisitEvent
from tests.support import Api
from tests.support_visits import ledger_balanced, load_visit, media_headers, run_visit, seed_visit, seed_world

PAST = timedelta(minutes=-40)


async def _post_many(api: Api, bodies: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with api.client.post("/v1/internal/media-events", json=body, headers=media_headers(api)) as resp:
            return resp.status, await resp.json(content_type=None)

    return await asyncio.gather(*(post(b) for b in bodies))


async def test_m8_s6_the_same_end_delivered_eight_times_at_once_is_applied_once(api: Api) -> None:
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, v)
    start = datetime.fromisoformat(v["starts_at"])
    end = {"event_id": f"sfu-{uuid.uuid4().hex}", "visit_id": v["id"], "kind": "ended", "reason": "completed",
           "occurred_at": (start + timedelta(minutes=30)).isoformat(), "connected_seconds": 10 * 60 + 1}
    answers = await _post_many(api, [end] * 8)
    assert [status for status, _ in answers] == [200] * 8, answers
    assert sorted(a["duplicate"] for _, a in answers) == [False] + [True] * 7
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("completed", 601)
    async with api.ctx.read_sessions() as session:
        stored = await session.scalar(select(func.count()).select_from(VisitEvent).where(
            VisitEvent.event_id == end["event_id"]))
        settlements = await session.scalar(select(func.count()).select_from(LedgerTransaction).where(
            LedgerTransaction.visit_id == v["id"], LedgerTransaction.kind == "per_minute_settlement"))
    assert (stored, settlements) == (1, 1)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 600 - 11 * 20  # 11 started minutes
    assert await ledger_balanced(api)


async def test_an_event_id_racing_on_two_visits_rows_is_a_duplicate_not_a_conflict(api: Api) -> None:
    """The visit row lock does not serialise these two (different visits): only the unique event id
    does. The loser is acknowledged as a duplicate, not answered 409 or 500."""
    w = await seed_world(api)
    first = await seed_visit(api, w, starts_in=PAST)
    second = await seed_visit(api, w, starts_in=timedelta(days=1))
    event_id = f"sfu-{uuid.uuid4().hex}"
    bodies = [{"event_id": event_id, "visit_id": v["id"], "kind": "monitor_joined", "actor": "monitor-officer-1",
               "occurred_at": v["starts_at"]} for v in (first, second) for _ in range(3)]
    answers = await _post_many(api, bodies)
    assert [status for status, _ in answers] == [200] * 6, answers
    assert sorted(a["duplicate"] for _, a in answers) == [False] + [True] * 5
    async with api.ctx.read_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(VisitEvent).where(
            VisitEvent.event_id == event_id)) == 1
