"""M1: duplicates of one money-moving request that arrive while the first is still running.

A client that retries (or a double-click, or a proxy) can send the same Idempotency-Key several
times at once. Every copy must tell the same story as the first answer: it waits for that answer
and replays it, or, if the first is still running after a bounded wait, gets a retryable
409 idempotency-key-in-use. Never a different domain answer (resident-busy, not-cancellable).
See control_api/idempotency.py.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from control_api import idempotency
from control_api.auth import Principal, Role
from control_api.db.models import CreditLot, IdempotentResponse, Payment, Visit
from control_api.problems import PROBLEM_TYPE_BASE
from tests.support import Api, As, Response
from tests.support_booking import at, book
from tests.support_facility import build_facility

COPIES = 20
BOTH = pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
POSTGRES = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


async def _count(api: Api, model: type) -> int:
    async with api.ctx.read_sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def _one_story(answers: list[Response], status: int) -> None:
    """Every answer is the first one: same status, same body; all but one are marked replays."""
    assert [a.status for a in answers] == [status] * len(answers), [(a.status, a.body) for a in answers]
    assert all(a.body == answers[0].body for a in answers), {str(a.body) for a in answers}
    replayed = [a for a in answers if a.headers.get("Idempotent-Replayed") == "true"]
    assert len(replayed) == len(answers) - 1


async def _hold_in_flight(api: Api, caller: As, key: str) -> tuple[AsyncSession, AsyncSessionTransaction]:
    """Another request (another process, say) with this key, in the middle of its transaction:
    its row is inserted and not committed. Returns (session, transaction) to end it with."""
    session = api.ctx.sessions()
    tx = await session.begin()
    assert caller.principal_id is not None
    principal = Principal(caller.principal_id, Role.VISITOR)
    await session.execute(insert(IdempotentResponse).values(
        id=str(uuid.uuid4()), principal=principal.key, key=key, request_fingerprint="0" * 64,
        status_code=idempotency.IN_FLIGHT, body={}, created_at=api.ctx.clock.now()))
    return session, tx


@BOTH
async def test_concurrent_duplicate_bookings_give_one_charge_and_one_answer(api: Api) -> None:
    w = await build_facility(api, kiosk_count=3)
    visitor = await w.approved_visitor(api)
    start = at(api, days=3)
    answers = await asyncio.gather(*(book(visitor, w.resident_id, start, key="double-click-0001")
                                     for _ in range(COPIES)))
    _one_story(list(answers), 201)
    assert await _count(api, Visit) == 1 and await _count(api, Payment) == 1
    assert len(api.gateway.settled_charges()) == 1 and api.gateway.voided_charges() == []
    # And afterwards, too: the key keeps answering the same.
    again = await book(visitor, w.resident_id, start, key="double-click-0001")
    assert again.ok(201) == answers[0].body and again.headers["Idempotent-Replayed"] == "true"


@BOTH
async def test_concurrent_duplicate_cancellations_credit_once_and_answer_alike(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    path = f"/v1/visits/{visit['id']}/cancel"
    answers = await asyncio.gather(*(visitor.post(path, {"reason": "ill"}, idempotency_key="cancel-key-0001")
                                     for _ in range(COPIES)))
    _one_story(list(answers), 200)
    assert answers[0].body["status"] == "cancelled" and answers[0].body["credited_cents"] > 0
    assert await _count(api, CreditLot) == 1


@BOTH
async def test_a_key_whose_first_attempt_failed_runs_again(api: Api) -> None:
    """A domain answer (4xx) stores nothing: once the cause is gone, the same request succeeds."""
    w = await build_facility(api, kiosk_count=3)
    visitor = await w.approved_visitor(api)
    start = at(api, days=3)
    blocker = (await book(visitor, w.resident_id, start)).ok(201)
    (await book(visitor, w.resident_id, start, key="retry-key-0001")).problem(409, "resident-busy")
    (await visitor.post(f"/v1/visits/{blocker['id']}/cancel", {"reason": "ill"}, idempotency_key=True)).ok()
    retried = await book(visitor, w.resident_id, start, key="retry-key-0001")
    assert retried.ok(201)["id"] != blocker["id"] and "Idempotent-Replayed" not in retried.headers
    assert await _count(api, Visit) == 2  # the blocker (cancelled) and the retried one, paid with its credit


@BOTH
async def test_a_duplicate_waits_for_the_first_and_runs_when_it_died(api: Api) -> None:
    """The first request's process dies mid-transaction: the database rolls its work back,
    nothing was charged, and the waiting duplicate takes over and runs the request."""
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    session, tx = await _hold_in_flight(api, visitor, "orphan-key-0001")
    try:
        waiting = asyncio.ensure_future(book(visitor, w.resident_id, at(api, days=3), key="orphan-key-0001"))
        await asyncio.sleep(0.5)
        assert not waiting.done(), waiting.result()
        await tx.rollback()
    finally:
        await session.close()
    answer = await asyncio.wait_for(waiting, 30)
    answer.ok(201)
    assert "Idempotent-Replayed" not in answer.headers
    assert await _count(api, Visit) == 1 and len(api.gateway.settled_charges()) == 1


@BOTH
async def test_a_duplicate_of_a_committed_request_replays_it_after_waiting(api: Api) -> None:
    """The first commits while the duplicate waits: the duplicate replays the stored answer."""
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    session, tx = await _hold_in_flight(api, visitor, "slow-key-0001")
    try:
        waiting = asyncio.ensure_future(book(visitor, w.resident_id, at(api, days=3), key="slow-key-0001"))
        await asyncio.sleep(0.5)
        assert not waiting.done(), waiting.result()
        await session.execute(update(IdempotentResponse).where(
            IdempotentResponse.key == "slow-key-0001").values(
            status_code=201, body={"id": "from-the-first"}, request_fingerprint="f" * 64))
        await tx.commit()
    finally:
        await session.close()
    # The fingerprint stored by "the first" differs: a different request under the same key.
    (await asyncio.wait_for(waiting, 30)).problem(422, "idempotency-key-reused")
    assert await _count(api, Visit) == 0 and api.gateway.settled_charges() == []


@POSTGRES
async def test_a_duplicate_of_a_request_still_running_after_the_wait_gets_409_in_use(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL only: there the first request's uncommitted row is what the duplicate waits on,
    for at most IN_FLIGHT_WAIT_SECONDS. (On SQLite write transactions are serialised: a duplicate
    waits for the database lock like any writer, and then always sees the first one's outcome.)"""
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT_SECONDS", 0.3)
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    session, tx = await _hold_in_flight(api, visitor, "busy-key-0001")
    try:
        answer = await asyncio.wait_for(book(visitor, w.resident_id, at(api, days=3), key="busy-key-0001"), 10)
    finally:
        await tx.rollback()
        await session.close()
    body = answer.problem(409, "idempotency-key-in-use")
    assert body["type"] == PROBLEM_TYPE_BASE + "idempotency-key-in-use"
    assert int(answer.headers["Retry-After"]) >= 1
    assert await _count(api, Visit) == 0 and api.gateway.settled_charges() == []
    # Retrying, as told, once the first is gone: it runs.
    (await book(visitor, w.resident_id, at(api, days=3), key="busy-key-0001")).ok(201)
