"""B8: visitors racing for the last kiosk slot, with real concurrency (PostgreSQL and SQLite).

Both requests run at once through the real server; each holds its own database connection. The
booking service locks the housing unit, then the resident, before it checks capacity and before it
charges, so the loser waits, then sees the slot taken and is never charged. Changes of one visit
(cancel, move) lock the visit row, so two of them cannot both act on the same state.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from control_api.db.models import CreditLot, KioskNotification, Payment, Visit
from tests.support import Api
from tests.support_booking import add_resident, at, book, local
from tests.support_facility import build_facility

ROUNDS = 10
BOTH = pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)


def _morning(api: Api, hours: int) -> datetime:
    """09:00 local, two days ahead, plus `hours`: always inside the facility's all-day windows."""
    day = (api.ctx.clock.now() + timedelta(days=2)).astimezone(ZoneInfo("America/Chicago")).date()
    return local(day, 9) + timedelta(hours=hours)


async def _count(api: Api, model: type) -> int:
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


@BOTH
async def test_b8_exactly_one_of_two_racing_visitors_gets_the_last_kiosk(api: Api) -> None:
    w = await build_facility(api, kiosk_count=1, weekly_visit_limit=100)  # only the kiosk is scarce
    second = await add_resident(w, "Resident Two")
    alice = await w.approved_visitor(api)
    bob = await w.approved_visitor(api)
    winners = []
    for n in range(ROUNDS):
        start = _morning(api, n)
        # Alternate who is first in line, so neither request always starts ahead.
        pair = (book(alice, w.resident_id, start), book(bob, second, start))
        a, b = await asyncio.gather(*(pair if n % 2 else pair[::-1]))
        assert sorted([a.status, b.status]) == [201, 409], (a.body, b.body)
        loser = a if a.status == 409 else b
        assert loser.problem(409, "slot-taken")["rule"] == "B4"
        winners.append(a.body["id"] if a.status == 201 else b.body["id"])
    assert len(set(winners)) == ROUNDS
    assert await _count(api, Visit) == ROUNDS and await _count(api, Payment) == ROUNDS
    assert await _count(api, KioskNotification) == ROUNDS
    # One settled charge per booking, and the losers were never charged at all (not even voided).
    assert len(api.gateway.settled_charges()) == ROUNDS
    assert api.gateway.voided_charges() == []


@BOTH
async def test_b8_b3_two_visitors_racing_for_the_same_resident(api: Api) -> None:
    w = await build_facility(api, kiosk_count=5)
    alice = await w.approved_visitor(api)
    bob = await w.approved_visitor(api)
    for n in range(4):
        start = _morning(api, n)
        a, b = await asyncio.gather(book(alice, w.resident_id, start),
                                    book(bob, w.resident_id, start + timedelta(minutes=15)))
        assert sorted([a.status, b.status]) == [201, 409], (a.body, b.body)
        (a if a.status == 409 else b).problem(409, "resident-busy")
    assert await _count(api, Visit) == 4 and len(api.gateway.settled_charges()) == 4
    assert api.gateway.voided_charges() == []


@BOTH
async def test_concurrent_cancellations_of_one_visit_credit_once(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    path = f"/v1/visits/{visit['id']}/cancel"
    mine, theirs = await asyncio.gather(visitor.post(path, {"reason": "ill"}, idempotency_key=True),
                                        w.admin.post(path, {"reason": "count"}, idempotency_key=True))
    assert sorted([mine.status, theirs.status]) == [200, 409], (mine.body, theirs.body)
    (mine if mine.status == 409 else theirs).problem(409, "not-cancellable")
    assert await _count(api, CreditLot) == 1
    async with api.ctx.sessions() as s:
        kinds = (await s.scalars(select(KioskNotification.kind))).all()
    assert sorted(kinds) == ["booked", "cancelled"]
