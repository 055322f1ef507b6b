"""Money: credits and their expiry (M2, M5), statements (M9), credit requests (M6), the ledger (M1)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.db.models import CreditLot, LedgerEntry, LedgerTransaction, Visit
from control_api.domain import credits
from control_api.services import billing
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.support_visits import run_visit


async def _balanced(api: Api) -> bool:
    session: AsyncSession
    async with api.ctx.sessions() as session:
        return await billing.ledger_is_balanced(session)


async def test_m5_credit_expires_after_90_days_and_is_never_spent(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=1)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    (await visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    balance = (await visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 750
    await api.advance(w.operator, 89 * 86400)
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 750
    await api.advance(w.operator, 2 * 86400)  # the sweep runs right after the clock moves
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0
    lines = (await visitor.get("/v1/me/statement")).ok()
    assert [(x["kind"], x["rule"], x["amount_cents"]) for x in lines] == [
        ("visit_payment", "B6", -750), ("credit_issued", "M3a", 750), ("credit_expired", "M5", -750)]
    # an expired credit is never spent: the next booking is charged in full to the card
    nxt = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    assert (nxt["credit_used_cents"], nxt["card_charged_cents"]) == (0, 750)
    assert await _balanced(api)


async def test_m5_spending_takes_the_credit_that_expires_first(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=1)
    visitor = await w.approved_visitor(api)
    first = (await book(visitor, w.resident_id, at(api, days=2), length=20)).ok(201)  # 500
    (await visitor.post(f"/v1/visits/{first['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    await api.advance(w.operator, 10 * 86400)
    second = (await book(visitor, w.resident_id, at(api, days=2), use_credit=False)).ok(201)  # 750
    (await visitor.post(f"/v1/visits/{second['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    lots = (await visitor.get("/v1/me/balance")).ok()["lots"]
    assert [x["amount_cents"] for x in lots] == [500, 750]  # older lot expires first
    (await book(visitor, w.resident_id, at(api, days=3))).ok(201)  # 750 from credit: 500 + 250
    lots = (await visitor.get("/v1/me/balance")).ok()["lots"]
    assert [(x["amount_cents"], x["remaining_cents"]) for x in lots] == [(750, 500)]


def test_m5_allocation_is_soonest_expiring_first_and_skips_expired() -> None:
    from datetime import UTC, datetime

    now = datetime(2027, 1, 1, tzinfo=UTC)
    lots = [credits.Lot("late", 500, now + timedelta(days=80), now),
            credits.Lot("expired", 900, now - timedelta(seconds=1), now - timedelta(days=91)),
            credits.Lot("soon", 300, now + timedelta(days=5), now - timedelta(days=85))]
    assert credits.allocate(lots, 600, now) == [("soon", 300), ("late", 300)]
    assert credits.available_cents(lots, now) == 800
    assert [x.id for x in credits.expired(lots, now)] == ["expired"]


async def test_m6_credit_requests_have_a_72_hour_deadline_and_overdue_flag(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    (await visitor.post("/v1/credit-requests", {"visit_id": v["id"], "description": "froze"})).problem(422)
    await run_visit(api, v, end={"reason": "completed"}, connected_seconds=120)
    other = await w.approved_visitor(api)
    (await other.post("/v1/credit-requests", {"visit_id": v["id"], "description": "x"})).problem(404)
    cr = (await visitor.post("/v1/credit-requests", {"visit_id": v["id"], "description": "video froze"})).ok(201)
    assert cr["overdue"] is False
    (await visitor.post("/v1/credit-requests", {"visit_id": v["id"], "description": "again"})).problem(409)
    assert (await w.operator.get("/v1/credit-requests?overdue=true")).ok() == []
    await api.advance(w.operator, 73 * 3600)
    overdue = (await w.operator.get("/v1/credit-requests?overdue=true")).ok()
    assert [x["id"] for x in overdue] == [cr["id"]] and overdue[0]["overdue"] is True
    decide = f"/v1/credit-requests/{cr['id']}/decision"
    (await w.operator.post(decide, {"decision": "deny"}, idempotency_key=True)).problem(422)
    (await visitor.post(decide, {"decision": "approve"}, idempotency_key=True)).problem(403)
    (await w.operator.post(decide, {"decision": "approve"})).problem(400, "idempotency-key-required")
    done = (await w.operator.post(decide, {"decision": "approve"}, idempotency_key="decide-key-01")).ok()
    replay = await w.operator.post(decide, {"decision": "approve"}, idempotency_key="decide-key-01")
    assert replay.ok() == done  # a retried decision answers the same and credits nothing more
    assert (done["status"], done["credited_cents"], done["overdue"]) == ("approved", 750, False)
    (await w.operator.post(decide, {"decision": "deny", "note": "x"}, idempotency_key=True)).problem(409)
    lines = (await w.operator.get(f"/v1/visitors/{visitor.principal_id}/statement")).ok()
    assert lines[-1]["rule"] == "M6" and lines[-1]["visit_id"] == v["id"]


async def test_m1_every_ledger_transaction_balances_and_names_its_rule(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=1)
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Tax", "kind": "tax", "rate_basis_points": 800}]})).ok()
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    (await visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    session: AsyncSession
    async with api.ctx.sessions() as session:
        txs = (await session.scalars(select(LedgerTransaction))).all()
        for tx in txs:
            amounts = (await session.scalars(select(LedgerEntry.amount_cents).where(
                LedgerEntry.transaction_id == tx.id))).all()
            assert sum(amounts) == 0 and tx.rule and tx.visit_id
        assert await billing.ledger_is_balanced(session)
        lots = (await session.scalars(select(CreditLot))).all()
        assert [(x.amount_cents, x.remaining_cents) for x in lots] == [(750, 0)]  # price only, fees not credited
        visits = (await session.scalars(select(Visit).order_by(Visit.created_at))).all()
        assert [x.total_cents for x in visits] == [810, 810]
    lines = (await visitor.get("/v1/me/statement")).ok()
    assert [(x["rule"], x["amount_cents"], x["card_cents"], x["credit_cents"]) for x in lines] == [
        ("B6", -810, 810, 0), ("M3a", 750, 0, 750), ("B6", -810, 60, -750)]


async def test_m2_credit_is_never_refunded_to_the_card(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=1)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    (await w.admin.post(f"/v1/visits/{v['id']}/cancel", {"reason": "lockdown"}, idempotency_key=True)).ok()
    assert api.gateway.voided_charges() == []  # the card charge stands; the money is on the balance
    assert [c.amount_cents for c in api.gateway.settled_charges()] == [750]
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 750
