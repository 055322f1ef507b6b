"""Money: credits and their expiry (M2, M5), statements (M9), credit requests (M6), the ledger (M1)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.db.models import CreditLot, LedgerEntry, LedgerTransaction, Visit
from control_api.domain import credits
from control_api.services import billing
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.support_visits import run_visit, seed_visit, seed_world


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


async def test_m5_credit_given_back_keeps_the_expiry_of_the_lot_it_came_from(api: Api) -> None:
    """Issue 12's finding: credit spent on a visit that is then cancelled used to come back as a
    new lot with a fresh 90 days, so an expiry could be rolled over forever. It keeps the expiry
    of the lot it came from; only a card-paid part becomes a new lot."""
    w = await build_facility(api, cancellation_notice_hours=1)
    visitor = await w.approved_visitor(api)
    first = (await book(visitor, w.resident_id, at(api, days=2), length=20)).ok(201)  # 500 by card
    (await visitor.post(f"/v1/visits/{first['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    [lot] = (await visitor.get("/v1/me/balance")).ok()["lots"]
    expiry = lot["expires_at"]
    await api.advance(w.operator, 80 * 86400)
    # 750: 500 from the credit (its lot expires in 10 days) + 250 by card; cancelled in time.
    second = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    assert (second["credit_used_cents"], second["card_charged_cents"]) == (500, 250)
    (await visitor.post(f"/v1/visits/{second['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    lots = (await visitor.get("/v1/me/balance")).ok()["lots"]
    assert sorted((x["amount_cents"], x["expires_at"] == expiry) for x in lots) == [(250, False), (500, True)]
    await api.advance(w.operator, 11 * 86400)  # past the first lot's expiry: its 500 expires, again
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 250
    assert await _balanced(api)


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


# ---------------------------------------------------------------- without the booking area (ORM-seeded visits)


async def test_m6_credit_requests_are_for_own_visits_whose_start_has_passed(api: Api) -> None:
    w = await seed_world(api)
    future = await seed_visit(api, w, starts_in=timedelta(hours=3))
    started = await seed_visit(api, w, starts_in=timedelta(minutes=-2))  # still `scheduled`: nothing reported yet
    cancelled = await seed_visit(api, w, starts_in=timedelta(minutes=-60), status="cancelled")
    file = "/v1/credit-requests"
    (await w.visitor.post(file, {"visit_id": future["id"], "description": "x"})).problem(422, "not-claimable")
    (await w.visitor.post(file, {"visit_id": cancelled["id"], "description": "x"})).problem(422, "not-claimable")
    (await w.visitor.post(file, {"visit_id": "no-such-visit", "description": "x"})).problem(404)
    stranger = await api.sign_up()
    (await stranger.post(file, {"visit_id": started["id"], "description": "x"})).problem(404)
    (await w.operator.post(file, {"visit_id": started["id"], "description": "x"})).problem(403)
    cr = (await w.visitor.post(file, {"visit_id": started["id"], "description": "the video froze"})).ok(201)
    filed = datetime.fromisoformat(cr["filed_at"])
    assert datetime.fromisoformat(cr["decide_by"]) == filed + timedelta(hours=72)
    assert (cr["status"], cr["overdue"], cr["visit_id"]) == ("open", False, started["id"])
    (await w.visitor.post(file, {"visit_id": started["id"], "description": "again"})).problem(409, "already-requested")
    assert await _balanced(api)


async def test_m6_overdue_flag_follows_the_clock_and_decisions_are_final(api: Api) -> None:
    w = await seed_world(api)
    other = await api.sign_up()
    mine = await seed_visit(api, w, starts_in=timedelta(minutes=-40))
    theirs = await seed_visit(api, w, starts_in=timedelta(minutes=-40), visitor=other)
    a = (await w.visitor.post("/v1/credit-requests", {"visit_id": mine["id"], "description": "no audio"})).ok(201)
    b = (await other.post("/v1/credit-requests", {"visit_id": theirs["id"], "description": "frozen"})).ok(201)
    assert [x["id"] for x in (await w.visitor.get("/v1/credit-requests")).ok()] == [a["id"]]  # own only
    assert {x["id"] for x in (await w.operator.get("/v1/credit-requests")).ok()} == {a["id"], b["id"]}
    await api.advance(w.operator, 71 * 3600)
    assert (await w.operator.get("/v1/credit-requests?overdue=true")).ok() == []
    await api.advance(w.operator, 2 * 3600)  # past the 72-hour deadline
    overdue = (await w.operator.get("/v1/credit-requests?overdue=true")).ok()
    assert {x["id"] for x in overdue} == {a["id"], b["id"]} and all(x["overdue"] for x in overdue)
    assert (await w.visitor.get("/v1/credit-requests")).ok()[0]["overdue"] is True

    decide_a = f"/v1/credit-requests/{a['id']}/decision"
    (await w.operator.post(decide_a, {"decision": "deny"}, idempotency_key=True)).problem(422)  # a denial says why
    (await w.visitor.post(decide_a, {"decision": "approve"}, idempotency_key=True)).problem(403)
    (await w.operator.post("/v1/credit-requests/no-such/decision", {"decision": "approve"},
                           idempotency_key=True)).problem(404)
    denied = (await w.operator.post(decide_a, {"decision": "deny", "note": "the logs show a good connection"},
                                    idempotency_key=True)).ok()
    assert (denied["status"], denied["credited_cents"], denied["overdue"]) == ("denied", 0, False)
    assert denied["decision_note"] == "the logs show a good connection"
    (await w.operator.post(decide_a, {"decision": "approve"}, idempotency_key=True)).problem(409, "already-decided")
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0

    approved = (await w.operator.post(f"/v1/credit-requests/{b['id']}/decision", {"decision": "approve"},
                                      idempotency_key=True)).ok()
    assert (approved["status"], approved["credited_cents"]) == ("approved", 750)
    assert (await other.get("/v1/me/balance")).ok()["lots"][0]["rule"] == "M6"
    assert [x["id"] for x in (await w.operator.get("/v1/credit-requests?overdue=true")).ok()] == []
    assert {x["id"] for x in (await w.operator.get("/v1/credit-requests?overdue=false")).ok()} == {a["id"], b["id"]}
    assert [x["id"] for x in (await w.operator.get("/v1/credit-requests?status=approved")).ok()] == [b["id"]]
    assert await _balanced(api)


async def test_m9_statement_shows_every_movement_with_its_visit_and_rule(api: Api) -> None:
    w = await seed_world(api)
    failed = await seed_visit(api, w, starts_in=timedelta(minutes=-40))
    await run_visit(api, failed, end={"reason": "failed"}, connected_seconds=0)  # M6: 750 back
    short = await seed_visit(api, w, starts_in=timedelta(days=1), length=20, use_credit=True)  # 750 from credit
    assert short["credit_used_cents"] == 750  # world price is per visit, whatever the length
    other = await seed_visit(api, w, starts_in=timedelta(minutes=-40))
    await run_visit(api, other, end={"reason": "failed"}, connected_seconds=0)
    await api.advance(w.operator, 91 * 86400)  # the second credit expires unspent (M5)
    lines = (await w.visitor.get("/v1/me/statement")).ok()
    assert [(x["kind"], x["rule"], x["amount_cents"], x["visit_id"]) for x in lines] == [
        ("visit_payment", "B6", -750, failed["id"]), ("credit_issued", "M6", 750, failed["id"]),
        ("visit_payment", "B6", -750, short["id"]), ("visit_payment", "B6", -750, other["id"]),
        ("credit_issued", "M6", 750, other["id"]), ("credit_expired", "M5", -750, other["id"])]
    assert all(x["description"] for x in lines)
    # The operator reads any visitor's statement; visitors only their own.
    assert (await w.operator.get(f"/v1/visitors/{w.visitor.principal_id}/statement")).ok() == lines
    stranger = await api.sign_up()
    (await stranger.get(f"/v1/visitors/{w.visitor.principal_id}/statement")).problem(403)
    assert (await stranger.get("/v1/me/statement")).ok() == []
    (await w.operator.get(f"/v1/visitors/{w.operator.principal_id}/statement")).problem(404)
    (await w.operator.get("/v1/visitors/no-such-user/statement")).problem(404)
    (await w.operator.get("/v1/me/balance")).problem(403)
    assert await _balanced(api)
