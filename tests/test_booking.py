"""Booking through the API: rules B1-B7, M1, M3, M4, S6 check-in, idempotency."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from control_api.db.models import LedgerTransaction, Visit
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility


async def _count(api: Api, model: type) -> int:
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_b6_quote_itemises_fees_and_the_charge_matches_it(api: Api) -> None:
    w = await build_facility(api)
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Processing", "kind": "fee", "amount_cents": 95},
        {"name": "Sales tax", "kind": "tax", "rate_basis_points": 1000}]})).ok()
    visitor = await w.approved_visitor(api)
    start = at(api)
    q = (await visitor.post("/v1/quotes", {"resident_id": w.resident_id, "starts_at": start.isoformat(),
                                           "length_minutes": 30})).ok()
    assert q["bookable"] is True
    assert [(line["kind"], line["amount_cents"]) for line in q["quote"]["lines"]] == [
        ("price", 750), ("fee", 95), ("tax", 75)]
    assert q["quote"]["total_cents"] == 920
    visit = (await book(visitor, w.resident_id, start)).ok(201)
    assert visit["total_cents"] == 920 and visit["card_charged_cents"] == 920 and visit["status"] == "scheduled"
    assert [c.amount_cents for c in api.gateway.settled_charges()] == [920]


async def test_b6_a_declined_card_books_nothing_and_charges_nothing(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    r = await book(visitor, w.resident_id, at(api), token="tok_chargeDeclinedInsufficientFunds")
    assert r.problem(402, "payment-declined")["decline_code"] == "insufficient_funds"
    (await book(visitor, w.resident_id, at(api), token=None)).problem(402, "payment-required")
    assert await _count(api, Visit) == 0 and await _count(api, LedgerTransaction) == 0
    assert api.gateway.settled_charges() == []
    notices = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert notices == []


async def test_m1_card_numbers_are_refused(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    r = await book(visitor, w.resident_id, at(api), token="4242 4242 4242 4242")
    assert "M1" in r.problem(422, "validation-error")["detail"]


async def test_b1_a_visit_type_never_changes(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api))).ok(201)
    r = await visitor.patch(f"/v1/visits/{visit['id']}", {"visit_type": "privileged"})
    r.problem(422, "visit-immutable")
    (await w.admin.patch(f"/v1/visits/{visit['id']}", {"visit_type": "privileged"})).problem(422)
    assert (await visitor.get(f"/v1/visits/{visit['id']}")).ok()["visit_type"] == "social"


async def test_v1_v2_only_approved_visitors_and_verified_attorneys_book(api: Api) -> None:
    w = await build_facility(api)
    stranger = await api.sign_up()
    (await book(stranger, w.resident_id, at(api))).problem(403)
    visitor = await w.approved_visitor(api)
    (await book(visitor, w.resident_id, at(api), visit_type="privileged")).problem(403)
    unverified = await api.sign_up("attorney")
    (await book(unverified, w.resident_id, at(api), visit_type="privileged")).problem(403)
    attorney = await w.approved_visitor(api, role="attorney")
    visit = (await book(attorney, w.resident_id, at(api), visit_type="privileged", token=None)).ok(201)
    assert visit["visit_type"] == "privileged" and visit["total_cents"] == 0


async def test_b2_visit_must_lie_inside_one_window_and_outside_closures(api: Api) -> None:
    # Windows in Chicago: every day 09:00-12:00 local.
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)])
    visitor = await w.approved_visitor(api)
    from zoneinfo import ZoneInfo

    local = (api.ctx.clock.now() + timedelta(days=3)).astimezone(ZoneInfo("America/Chicago"))
    nine = local.replace(hour=9, minute=0, second=0, microsecond=0)
    (await book(visitor, w.resident_id, nine.replace(hour=11, minute=45))).problem(422, "outside-visitation-window")
    (await book(visitor, w.resident_id, nine.replace(hour=8, minute=45))).problem(422, "outside-visitation-window")
    (await w.admin.post(f"/v1/facilities/{w.facility_id}/closures", {
        "starts_at": nine.isoformat(), "ends_at": (nine + timedelta(hours=1)).isoformat(), "reason": "count"})).ok(201)
    (await book(visitor, w.resident_id, nine.replace(hour=9, minute=30))).problem(422, "facility-closed")
    ok = (await book(visitor, w.resident_id, nine.replace(hour=11, minute=30))).ok(201)
    assert ok["starts_at"].startswith((nine.replace(hour=11, minute=30)).astimezone(ZoneInfo("UTC")).strftime(
        "%Y-%m-%dT%H:%M"))


async def test_b3_resident_must_be_free_and_within_weekly_limit(api: Api) -> None:
    w = await build_facility(api, weekly_visit_limit=2, kiosk_count=5)
    a = await w.approved_visitor(api)
    b = await w.approved_visitor(api)
    start = at(api, days=8)
    (await book(a, w.resident_id, start)).ok(201)
    (await book(b, w.resident_id, start + timedelta(minutes=15))).problem(409, "resident-busy")
    (await book(b, w.resident_id, start + timedelta(minutes=30))).ok(201)
    r = await book(b, w.resident_id, start + timedelta(hours=2))
    body = r.problem(422)
    assert any(v["slug"] == "weekly-limit-reached" for v in body["violations"])


async def test_b4_kiosk_capacity_holds_every_minute(api: Api) -> None:
    w = await build_facility(api, kiosk_count=2)
    others = [(await w.admin.post(f"/v1/facilities/{w.facility_id}/residents", {
        "booking_number": f"R-{n}", "full_name": f"R {n}", "housing_unit_id": w.unit_id})).ok(201)["id"]
        for n in (2, 3, 4)]
    visitor = await w.approved_visitor(api)
    t = at(api, days=3)
    (await book(visitor, w.resident_id, t)).ok(201)  # 00-30
    (await book(visitor, others[0], t + timedelta(minutes=15))).ok(201)  # 15-45
    # 20-50 would be the third at minute 20..30: refused
    (await book(visitor, others[1], t + timedelta(minutes=15), length=20)).problem(409, "slot-taken")
    # 30-60 overlaps only the 15-45 visit: accepted
    (await book(visitor, others[1], t + timedelta(minutes=30))).ok(201)
    (await book(visitor, others[2], t + timedelta(minutes=30))).problem(409, "slot-taken")


async def test_b5_lead_time_and_horizon(api: Api) -> None:
    w = await build_facility(api, min_lead_minutes=24 * 60, booking_horizon_days=7)
    visitor = await w.approved_visitor(api)
    (await book(visitor, w.resident_id, at(api, days=0.5))).problem(422, "too-soon")
    (await book(visitor, w.resident_id, at(api, days=8))).problem(422, "beyond-horizon")
    (await book(visitor, w.resident_id, at(api, days=3))).ok(201)


async def test_b7_kiosk_is_told_of_booked_moved_and_cancelled_visits(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api))).ok(201)
    (await w.admin.post(f"/v1/visits/{visit['id']}/move", {"starts_at": at(api, days=3).isoformat()})).ok()
    (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "sick"}, idempotency_key=True)).ok()
    notes = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert sorted(n["kind"] for n in notes) == ["booked", "cancelled", "moved"]
    assert all(n["resident_name"] == "Resident One" for n in notes)
    acked = (await w.kiosk.post(f"/v1/kiosk/notifications/{notes[0]['id']}/ack")).ok()
    assert acked["acknowledged_at"] is not None


async def test_m3a_visitor_cancelling_with_notice_gets_the_price_back_not_fees(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=24)
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Processing", "kind": "fee", "amount_cents": 100}]})).ok()
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    assert visit["total_cents"] == 850
    done = (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "plans changed"},
                               idempotency_key=True)).ok()
    assert (done["status"], done["credited_cents"], done["credit_rule"]) == ("cancelled", 750, "M3a")
    # The credit pays for the next visit before the card (M2, M5).
    nxt = (await book(visitor, w.resident_id, at(api, days=4))).ok(201)
    assert (nxt["credit_used_cents"], nxt["card_charged_cents"]) == (750, 100)


async def test_m4_short_notice_cancellation_earns_no_credit(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    done = (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    assert (done["credited_cents"], done["credit_rule"]) == (0, None)


async def test_m3b_m3d_facility_and_operator_cancellations_always_credit_before_start(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48)
    visitor = await w.approved_visitor(api)
    v1 = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    v2 = (await book(visitor, w.resident_id, at(api, days=1, hours=2))).ok(201)
    r1 = (await w.officer.post(f"/v1/visits/{v1['id']}/cancel", {"reason": "lockdown"}, idempotency_key=True)).ok()
    r2 = (await w.operator.post(f"/v1/visits/{v2['id']}/cancel", {"reason": "outage"}, idempotency_key=True)).ok()
    assert (r1["cancelled_by"], r1["credit_rule"], r1["credited_cents"]) == ("facility", "M3b", 750)
    assert (r2["cancelled_by"], r2["credit_rule"], r2["credited_cents"]) == ("operator", "M3d", 750)


async def test_m3c_rejected_booking_is_credited_and_m4_no_cancel_after_start(api: Api) -> None:
    w = await build_facility(api, review_mode="manual")
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    assert v["status"] == "pending_review"
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "reject"}, idempotency_key=True)).problem(422)
    r = (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "reject", "reason": "not on list"},
                            idempotency_key=True)).ok()
    assert (r["status"], r["credit_rule"], r["credited_cents"]) == ("rejected", "M3c", 750)
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"}, idempotency_key=True)).problem(409)
    v2 = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    (await w.admin.post(f"/v1/visits/{v2['id']}/review", {"decision": "approve"}, idempotency_key=True)).ok()
    started = datetime.fromisoformat(v2["starts_at"]) + timedelta(minutes=5)
    await api.advance(w.operator, int((started - api.ctx.clock.now()).total_seconds()))
    r = await visitor.post(f"/v1/visits/{v2['id']}/cancel", {"reason": "late"}, idempotency_key=True)
    r.problem(409, "visit-started")


async def test_booking_is_idempotent_per_key(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    start = at(api)
    first = (await book(visitor, w.resident_id, start, key="booking-key-0001")).ok(201)
    again = await book(visitor, w.resident_id, start, key="booking-key-0001")
    assert again.ok(201) == first and again.headers.get("Idempotent-Replayed") == "true"
    assert len(api.gateway.settled_charges()) == 1 and await _count(api, Visit) == 1
    other = await book(visitor, w.resident_id, start + timedelta(hours=1), key="booking-key-0001")
    other.problem(422, "idempotency-key-reused")
    (await book(visitor, w.resident_id, start, key=False)).problem(400, "idempotency-key-required")


async def test_s6_kiosk_check_in_window_and_unit(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).problem(409, "check-in-not-open")
    upcoming = (await w.kiosk.get("/v1/visits")).ok()
    assert [x["id"] for x in upcoming] == [v["id"]]
    seconds = int(datetime.fromisoformat(v["starts_at"]).timestamp() - api.ctx.clock.now().timestamp()) - 5 * 60
    await api.advance(w.operator, seconds)
    checked = (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).ok()
    assert checked["resident_checked_in_at"] is not None


async def test_availability_lists_exactly_the_bookable_slots(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "11:00"} for d in range(7)])
    visitor = await w.approved_visitor(api)
    day = (api.ctx.clock.now() + timedelta(days=3)).date()
    path = f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=30"
    slots = (await visitor.get(path)).ok()["slots"]
    assert [s["local_start"][11:16] for s in slots] == ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15",
                                                         "10:30"]
    first = datetime.fromisoformat(slots[0]["starts_at"])
    (await book(visitor, w.resident_id, first)).ok(201)
    after = [s["local_start"][11:16] for s in (await visitor.get(path)).ok()["slots"]]
    assert after == ["09:30", "09:45", "10:00", "10:15", "10:30"]
    (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day + timedelta(days=40)}"
                       "&length_minutes=30")).problem(422)
    (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=25")).problem(
        422, "length-not-offered")
    stranger = await api.sign_up()
    (await stranger.get(path)).problem(403)
