"""Visit outcomes (S6), automatic credit for failures (M6), no credit for disconnects (M4),
per-minute settlement (M8), and the sweep that closes visits nobody reported."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from control_api.services.billing import ledger_is_balanced
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.support_visits import report, run_visit


async def _balanced(api: Api) -> bool:
    session: AsyncSession
    async with api.ctx.sessions() as session:
        return await ledger_is_balanced(session)


async def test_s6_completed_and_idempotent_reports(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api))).ok(201)
    await run_visit(api, v, end={"reason": "completed"})
    got = (await visitor.get(f"/v1/visits/{v['id']}")).ok()
    assert (got["status"], got["connected_seconds"]) == ("completed", 1800)
    start = datetime.fromisoformat(v["starts_at"])
    body = {"event_id": "dup-1", "visit_id": v["id"], "kind": "ended", "reason": "failed",
            "occurred_at": start.isoformat(), "connected_seconds": 1}
    headers = {"Authorization": f"Bearer {api.ctx.media_secret}"}
    first = (await api.anonymous.post("/v1/internal/media-events", body, headers=headers)).ok()
    again = (await api.anonymous.post("/v1/internal/media-events", body, headers=headers)).ok()
    assert first["duplicate"] is False and again["duplicate"] is True
    assert first["visit_status"] == "completed"  # a terminal visit never changes
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0


async def test_m6_a_failed_visit_is_credited_automatically_once(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api))).ok(201)
    await run_visit(api, v, end={"reason": "failed", "detail": "media never flowed"}, connected_seconds=0)
    got = (await visitor.get(f"/v1/visits/{v['id']}")).ok()
    assert got["status"] == "failed"
    balance = (await visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 750 and balance["lots"][0]["rule"] == "M6"
    # a credit request afterwards cannot credit the same visit twice
    cr = (await visitor.post("/v1/credit-requests", {"visit_id": v["id"], "description": "no video"})).ok(201)
    decided = (await w.operator.post(f"/v1/credit-requests/{cr['id']}/decision", {"decision": "approve"},
                                     idempotency_key=True)).ok()
    assert decided["credited_cents"] == 0
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 750
    assert await _balanced(api)


async def test_m4_disconnects_for_conduct_or_facility_get_no_credit(api: Api) -> None:
    w = await build_facility(api, kiosk_count=2)
    visitor = await w.approved_visitor(api)
    for n, reason in enumerate(("conduct", "facility")):
        v = (await book(visitor, w.resident_id, at(api, hours=n))).ok(201)
        await run_visit(api, v, end={"reason": "disconnected", "disconnect_reason": reason}, connected_seconds=300)
        got = (await visitor.get(f"/v1/visits/{v['id']}")).ok()
        assert (got["status"], got["disconnect_reason"]) == ("disconnected", reason)
        assert reason in got["ended_reason"]
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0
    bad = {"event_id": "bad-1", "visit_id": v["id"], "kind": "ended", "reason": "disconnected",
           "occurred_at": v["starts_at"]}
    (await api.anonymous.post("/v1/internal/media-events", bad,
                              headers={"Authorization": f"Bearer {api.ctx.media_secret}"})).problem(422)


async def test_m8_per_minute_visit_charges_connected_minutes_and_returns_the_rest(api: Api) -> None:
    w = await build_facility(api, size_tier="jail_100_349")
    (await w.admin.patch(f"/v1/facilities/{w.facility_id}", {"billing_mode": "per_minute"})).ok()
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api))).ok(201)
    assert v["total_cents"] == 30 * 20 and v["quote"]["per_minute_cents"] == 20
    await run_visit(api, v, end={"reason": "completed"}, connected_seconds=12 * 60 + 5)
    balance = (await visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 600 - 13 * 20  # 13 started minutes charged
    assert balance["lots"][0]["rule"] == "M8"
    lines = (await visitor.get("/v1/me/statement")).ok()
    assert [(x["rule"], x["amount_cents"]) for x in lines] == [("B6", -600), ("M8", 340)]
    assert await _balanced(api)


async def test_s6_sweep_closes_unreported_visits_as_no_shows_or_completed(api: Api) -> None:
    w = await build_facility(api, kiosk_count=3)
    visitor = await w.approved_visitor(api)
    t = at(api)
    nobody = (await book(visitor, w.resident_id, t)).ok(201)
    r2 = (await w.admin.post(f"/v1/facilities/{w.facility_id}/residents", {
        "booking_number": "R-2", "full_name": "Two", "housing_unit_id": w.unit_id})).ok(201)
    r3 = (await w.admin.post(f"/v1/facilities/{w.facility_id}/residents", {
        "booking_number": "R-3", "full_name": "Three", "housing_unit_id": w.unit_id})).ok(201)
    visitor_only = (await book(visitor, r2["id"], t)).ok(201)
    both = (await book(visitor, r3["id"], t)).ok(201)
    await run_visit(api, visitor_only, resident=False)
    await run_visit(api, both)
    end = datetime.fromisoformat(nobody["ends_at"])
    await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) + 60)
    statuses = {x["id"]: x for x in (await visitor.get("/v1/visits")).ok()}
    assert statuses[nobody["id"]]["status"] == "no_show_visitor"
    assert statuses[visitor_only["id"]]["status"] == "no_show_resident"
    assert statuses[both["id"]]["status"] == "completed"
    assert statuses[both["id"]]["connected_seconds"] == 30 * 60 - 5


async def test_events_for_unknown_or_cancelled_visits(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    (await visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    r = await api.anonymous.post("/v1/internal/media-events", {
        "event_id": "c-1", "visit_id": v["id"], "kind": "started", "occurred_at": v["starts_at"]},
        headers={"Authorization": f"Bearer {api.ctx.media_secret}"})
    r.problem(409)
    r = await api.anonymous.post("/v1/internal/media-events", {
        "event_id": "c-2", "visit_id": "no-such-visit", "kind": "started", "occurred_at": v["starts_at"]},
        headers={"Authorization": f"Bearer {api.ctx.media_secret}"})
    r.problem(404)


async def test_participant_left_and_rejoin_are_recorded_without_restarting(api: Api) -> None:
    """S5 bookkeeping: a drop and rejoin keeps the first join time; the visit's end is unchanged."""
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api))).ok(201)
    start = datetime.fromisoformat(v["starts_at"])
    await run_visit(api, v)
    await report(api, v["id"], "participant_left", start + timedelta(minutes=5), participant="visitor")
    again = await report(api, v["id"], "participant_joined", start + timedelta(minutes=6), participant="visitor")
    assert again["visit_status"] == "in_progress"
    got = (await visitor.get(f"/v1/visits/{v['id']}")).ok()
    assert got["ends_at"] == v["ends_at"]
