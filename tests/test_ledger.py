"""The ledger through the billing service itself (M1, M2, M5, M7, M8, M9), on both databases.

These call `control_api.services.billing` directly (what booking and outcomes call), then read
the result through the visitor's balance and statement routes.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from control_api.db.models import CreditLot, LedgerEntry, LedgerTransaction, Visit
from control_api.services import billing
from tests.support import Api
from tests.support_visits import Seeded, ledger_balanced, lots_of, seed_visit, seed_world


async def _issue(api: Api, w: Seeded, amount: int, *, days_ago: float, key: str) -> None:
    """A credit lot issued `days_ago` (so it expires credit_expiry_days after that)."""
    assert w.visitor.principal_id is not None
    async with api.ctx.sessions() as session, session.begin():
        await billing.issue_credit(session, api.ctx, visitor_id=w.visitor.principal_id, facility_id=w.facility_id,
                                   amount_cents=amount, rule="M3a", description=f"test credit {key}",
                                   now=api.ctx.clock.now() - timedelta(days=days_ago), visit_id=None,
                                   idempotency_key=f"test:{key}")


async def test_m5_spending_takes_the_soonest_expiring_credit_first_and_never_an_expired_one(api: Api) -> None:
    w = await seed_world(api)
    await _issue(api, w, 500, days_ago=0, key="fresh")  # expires in 90 days
    await _issue(api, w, 300, days_ago=80, key="old")  # expires in 10 days: spent first
    await _issue(api, w, 900, days_ago=95, key="expired")  # expired, not yet swept: never spent
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 800  # M5: expired credit never counts, even before the sweep
    assert [x["amount_cents"] for x in balance["lots"]] == [300, 500]

    first = await seed_visit(api, w, starts_in=timedelta(days=2), use_credit=True)  # 750: 300 old + 450 fresh
    assert (first["credit_used_cents"], first["card_charged_cents"]) == (750, 0)
    remaining = {lot.amount_cents: lot.remaining_cents for lot in await lots_of(api, w.visitor.principal_id or "")}
    assert remaining == {300: 0, 500: 50, 900: 900}  # the expired lot was not touched
    second = await seed_visit(api, w, starts_in=timedelta(days=3), use_credit=True)  # 50 credit + 700 card
    assert (second["credit_used_cents"], second["card_charged_cents"]) == (50, 700)
    assert [c.amount_cents for c in api.gateway.settled_charges()] == [700]

    lines = (await w.visitor.get("/v1/me/statement")).ok()
    payments = [(x["amount_cents"], x["card_cents"], x["credit_cents"]) for x in lines if x["rule"] == "B6"]
    assert payments == [(-750, 0, -750), (-750, 700, -50)]
    assert await ledger_balanced(api)


async def test_m5_expiry_sweep_moves_expired_credit_off_the_balance_once(api: Api) -> None:
    w = await seed_world(api)
    await _issue(api, w, 400, days_ago=89, key="soon")
    await _issue(api, w, 600, days_ago=1, key="later")
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 1000
    await api.advance(w.operator, 2 * 86400)  # moving the clock runs the sweeps
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 600 and [x["amount_cents"] for x in balance["lots"]] == [600]
    async with api.ctx.sessions() as session:
        assert await billing.expire_credits(session, api.ctx.clock.now(), api.ctx) == 0  # idempotent
        expired = (await session.scalars(select(CreditLot).where(CreditLot.expired.is_(True)))).all()
        assert [(x.amount_cents, x.remaining_cents) for x in expired] == [(400, 0)]
    lines = (await w.visitor.get("/v1/me/statement")).ok()
    assert [(x["kind"], x["rule"], x["amount_cents"]) for x in lines][-1] == ("credit_expired", "M5", -400)
    await api.advance(w.operator, 89 * 86400)
    assert (await w.visitor.get("/v1/me/balance")).ok() == {"available_cents": 0, "lots": []}
    rules = [x["rule"] for x in (await w.visitor.get("/v1/me/statement")).ok()]
    assert rules == ["M3a", "M3a", "M5", "M5"]
    assert await ledger_balanced(api)


async def test_m2_m7_a_visit_credit_is_its_price_without_fees_and_only_once(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(days=1), fee_cents=125)
    assert (v["price_cents"], v["fees_cents"], v["total_cents"]) == (750, 125, 875)
    async with api.ctx.sessions() as session, session.begin():
        visit = await session.get(Visit, v["id"])
        assert visit is not None
        now = api.ctx.clock.now()
        first = await billing.credit_visit(session, api.ctx, visit=visit, rule="M3b", description="x", now=now)
        again = await billing.credit_visit(session, api.ctx, visit=visit, rule="M6", description="x", now=now)
    assert (first, again) == (750, 0)
    lines = (await w.visitor.get("/v1/me/statement")).ok()
    assert [(x["rule"], x["amount_cents"], x["card_cents"], x["visit_id"]) for x in lines] == [
        ("B6", -875, 875, v["id"]), ("M3b", 750, 0, v["id"])]
    assert await ledger_balanced(api)


async def test_m8_settlement_charges_started_minutes_and_a_later_credit_never_doubles_it(api: Api) -> None:
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-40))
    async with api.ctx.sessions() as session, session.begin():
        visit = await session.get(Visit, v["id"])
        assert visit is not None
        now = api.ctx.clock.now()
        returned = await billing.settle_per_minute(session, api.ctx, visit=visit, connected_seconds=12 * 60 + 5,
                                                   now=now)
        twice = await billing.settle_per_minute(session, api.ctx, visit=visit, connected_seconds=0, now=now)
    assert (returned, twice) == (600 - 13 * 20, 0)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 340  # back at once
    async with api.ctx.sessions() as session, session.begin():
        visit = await session.get(Visit, v["id"])
        assert visit is not None
        credited = await billing.credit_visit(session, api.ctx, visit=visit, rule="M6", description="approved",
                                              now=api.ctx.clock.now())
    assert credited == 260  # only what was actually charged: the visitor ends with the full 600
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 600
    assert await ledger_balanced(api)


async def test_m1_an_unbalanced_transaction_is_refused_and_nothing_is_written(api: Api) -> None:
    async with api.ctx.sessions() as session:
        before = await session.scalar(select(func.count()).select_from(LedgerTransaction))
    async with api.ctx.sessions() as session:
        with pytest.raises(billing.LedgerImbalanceError):
            async with session.begin():
                await billing.post(session, kind="charge", rule="M1", description="bad", now=api.ctx.clock.now(),
                                   entries=[("asset:gateway", 100), ("revenue:fees", -99)])
    async with api.ctx.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(LedgerTransaction)) == before
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)) == 0
        assert await billing.ledger_is_balanced(session)
