"""B8: two visitors racing for the last kiosk slot, with real concurrency against PostgreSQL.

Both requests run at once through the real server; each holds its own database connection. The
booking service locks the housing unit before it checks capacity and before it charges, so the
loser waits, then sees the slot taken and is never charged.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from control_api.db.models import Payment, Visit
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility

ROUNDS = 6


@pytest.mark.parametrize("database_url", ["postgresql", "sqlite"], indirect=True)
async def test_b8_exactly_one_of_two_racing_visitors_gets_the_last_kiosk(api: Api) -> None:
    w = await build_facility(api, kiosk_count=1)
    second = (await w.admin.post(f"/v1/facilities/{w.facility_id}/residents", {
        "booking_number": "R-2", "full_name": "Resident Two", "housing_unit_id": w.unit_id})).ok(201)
    alice = await w.approved_visitor(api)
    bob = await w.approved_visitor(api)
    winners = []
    for n in range(ROUNDS):
        start = at(api, days=2) + timedelta(hours=n)
        a, b = await asyncio.gather(book(alice, w.resident_id, start), book(bob, second["id"], start))
        statuses = sorted([a.status, b.status])
        assert statuses == [201, 409], (a.body, b.body)
        loser = a if a.status == 409 else b
        assert loser.problem(409, "slot-taken")["rule"] == "B4"
        winners.append(a.body["id"] if a.status == 201 else b.body["id"])
    async with api.ctx.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(Visit)) == ROUNDS
        assert await s.scalar(select(func.count()).select_from(Payment)) == ROUNDS
    # One settled charge per booking, and the losers were never charged at all.
    assert len(api.gateway.settled_charges()) == ROUNDS
    assert api.gateway.voided_charges() == []
