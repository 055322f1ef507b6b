"""Booking through the API: rules B1-B7, M1, M3, M4, M5 spending, S6 check-in, V3 visibility, idempotency."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from control_api.db.models import LedgerTransaction, Visit
from tests.support import Api
from tests.support_booking import add_resident, add_unit, advance_to, at, book, credit_lots, local
from tests.support_facility import build_facility

NY = "America/New_York"
CHICAGO = ZoneInfo("America/Chicago")


async def _count(api: Api, model: type) -> int:
    async with api.ctx.sessions() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


# ------------------------------------------------------------------ B6, M1: quotes and payment


async def test_b6_quote_itemises_fees_and_the_charge_matches_it(api: Api) -> None:
    w = await build_facility(api)
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Processing", "kind": "fee", "amount_cents": 95},
        {"name": "Sales tax", "kind": "tax", "rate_basis_points": 1000}]})).ok()
    visitor = await w.approved_visitor(api)
    start = at(api)
    q = (await visitor.post("/v1/quotes", {"resident_id": w.resident_id, "starts_at": start.isoformat(),
                                           "length_minutes": 30})).ok()
    assert q["bookable"] is True and q["problems"] == []
    assert [(line["kind"], line["amount_cents"]) for line in q["quote"]["lines"]] == [
        ("price", 750), ("fee", 95), ("tax", 75)]
    assert q["quote"]["total_cents"] == 920
    assert "recorded" in q["quote"]["privacy_notice"] and "watch" in q["quote"]["privacy_notice"]  # told at booking
    visit = (await book(visitor, w.resident_id, start)).ok(201)
    assert visit["total_cents"] == 920 and visit["card_charged_cents"] == 920 and visit["status"] == "scheduled"
    assert visit["quote"] == q["quote"]
    assert [c.amount_cents for c in api.gateway.settled_charges()] == [920]
    # The same numbers on every later read.
    again = (await visitor.get(f"/v1/visits/{visit['id']}")).ok()
    assert (again["credit_used_cents"], again["card_charged_cents"], again["quote"]) == (0, 920, q["quote"])


async def test_b6_quote_says_why_a_slot_cannot_be_booked(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)])
    visitor = await w.approved_visitor(api)
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    q = (await visitor.post("/v1/quotes", {"resident_id": w.resident_id, "length_minutes": 30,
                                           "starts_at": local(day, 11, 45).isoformat()})).ok()
    assert q["bookable"] is False and [p["slug"] for p in q["problems"]] == ["outside-visitation-window"]
    assert q["quote"]["total_cents"] == 750


async def test_b6_a_declined_card_books_nothing_and_charges_nothing(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    r = await book(visitor, w.resident_id, at(api), token="tok_chargeDeclinedInsufficientFunds")
    assert r.problem(402, "payment-declined")["decline_code"] == "insufficient_funds"
    (await book(visitor, w.resident_id, at(api), token=None)).problem(402, "payment-required")
    assert await _count(api, Visit) == 0 and await _count(api, LedgerTransaction) == 0
    assert api.gateway.settled_charges() == []
    assert (await w.kiosk.get("/v1/kiosk/notifications")).ok() == []


async def test_m1_card_numbers_are_refused_tokens_accepted(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    for raw in ("4242 4242 4242 4242", "4242-4242-4242-4242", "4000056655665556", "tok_4111111111111",
                "378282246310005"):
        r = await book(visitor, w.resident_id, at(api), token=raw)
        assert "tokens only (M1)" in r.problem(422, "card-data-refused")["detail"]
    assert api.gateway.settled_charges() == [] and await _count(api, Visit) == 0
    (await book(visitor, w.resident_id, at(api), token="tok_visa")).ok(201)


# ------------------------------------------------------------------ B1, V1, V2


async def test_b1_a_visit_type_never_changes(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api))).ok(201)
    (await visitor.patch(f"/v1/visits/{visit['id']}", {"visit_type": "privileged"})).problem(422, "visit-immutable")
    (await w.admin.patch(f"/v1/visits/{visit['id']}", {"visit_type": "privileged"})).problem(422)
    (await w.operator.patch(f"/v1/visits/{visit['id']}", {"visit_type": "privileged"})).problem(422)
    # Moving keeps the type (and the length and the price).
    moved = (await w.admin.post(f"/v1/visits/{visit['id']}/move",
                                {"starts_at": at(api, days=3).isoformat()}, idempotency_key=True)).ok()
    assert (moved["visit_type"], moved["length_minutes"]) == ("social", 30)
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
    social = (await book(attorney, w.resident_id, at(api, days=3))).ok(201)  # attorneys may book social visits too
    assert social["visit_type"] == "social"
    (await book(visitor, "no-such-resident", at(api))).problem(404)


# ------------------------------------------------------------------ B2 (A1, A2)


async def test_b2_visit_must_lie_inside_one_window_and_outside_closures(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)])
    visitor = await w.approved_visitor(api)
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    (await book(visitor, w.resident_id, local(day, 11, 45))).problem(422, "outside-visitation-window")
    (await book(visitor, w.resident_id, local(day, 8, 45))).problem(422, "outside-visitation-window")
    (await w.admin.post(f"/v1/facilities/{w.facility_id}/closures", {
        "starts_at": local(day, 9).isoformat(), "ends_at": local(day, 10).isoformat(), "reason": "count"})).ok(201)
    (await book(visitor, w.resident_id, local(day, 9, 30))).problem(422, "facility-closed")
    (await book(visitor, w.resident_id, local(day, 9, 45))).problem(422, "facility-closed")  # overlaps the end
    ok = (await book(visitor, w.resident_id, local(day, 11, 30))).ok(201)
    assert _utc(ok["starts_at"]) == local(day, 11, 30).astimezone(UTC)


def _dst_sundays(after: date, zone: str) -> list[date]:
    """The next two Sundays on which the zone's clocks change (spring and autumn)."""
    found: list[date] = []
    day = after
    while len(found) < 2:
        day += timedelta(days=1)
        if day.weekday() == 6 and local(day, 12, zone=zone).utcoffset() != local(
                day - timedelta(days=1), 12, zone=zone).utcoffset():
            found.append(day)
    return found


async def test_b2_a1_windows_keep_local_hours_on_the_sundays_dst_starts_and_ends(api: Api) -> None:
    """A Sunday 08:00-11:00 window in New York: 12:00-15:00 UTC under EDT (from the March change),
    13:00-16:00 UTC under EST (from the November change)."""
    w = await build_facility(api, timezone=NY, windows=[{"weekday": 6, "start": "08:00", "end": "11:00"}])
    visitor = await w.approved_visitor(api)
    for sunday in _dst_sundays(api.ctx.clock.now().date(), NY):
        await advance_to(api, w.operator, local(sunday - timedelta(days=3), 12, zone=NY))
        utc_hour = 12 if sunday.month == 3 else 13  # EDT begins in March, EST in November
        path = f"/v1/residents/{w.resident_id}/availability?from={sunday}&to={sunday}&length_minutes=30"
        slots = (await visitor.get(path)).ok()["slots"]
        assert _utc(slots[0]["starts_at"]) == datetime(sunday.year, sunday.month, sunday.day, utc_hour, tzinfo=UTC)
        assert _utc(slots[-1]["ends_at"]) == datetime(sunday.year, sunday.month, sunday.day, utc_hour + 3, tzinfo=UTC)
        assert [s["local_start"][11:16] for s in slots][::5] == ["08:00", "09:15", "10:30"]
        visit = (await book(visitor, w.resident_id, local(sunday, 8, zone=NY))).ok(201)
        assert _utc(visit["starts_at"]) == datetime(sunday.year, sunday.month, sunday.day, utc_hour, tzinfo=UTC)
        (await book(visitor, w.resident_id, local(sunday, 10, 45, zone=NY))).problem(422, "outside-visitation-window")
        late_utc = datetime(sunday.year, sunday.month, sunday.day, utc_hour + 2, 45, tzinfo=UTC)  # 10:45 local
        (await book(visitor, w.resident_id, late_utc)).problem(422, "outside-visitation-window")
        (await book(visitor, w.resident_id, late_utc - timedelta(minutes=15))).ok(201)  # 10:30-11:00 local


# ------------------------------------------------------------------ B3, B4, B5


async def test_b3_resident_must_be_free_and_within_weekly_limit(api: Api) -> None:
    w = await build_facility(api, weekly_visit_limit=2, kiosk_count=5)
    a = await w.approved_visitor(api)
    b = await w.approved_visitor(api)
    # A Wednesday noon, local: the whole test stays inside one Monday-to-Sunday week.
    day = (api.ctx.clock.now() + timedelta(days=8)).astimezone(CHICAGO).date()
    day += timedelta(days=(2 - day.weekday()) % 7)
    start = local(day, 12)
    (await book(a, w.resident_id, start)).ok(201)
    (await book(b, w.resident_id, start + timedelta(minutes=15))).problem(409, "resident-busy")
    (await book(b, w.resident_id, start + timedelta(minutes=30))).ok(201)
    body = (await book(b, w.resident_id, start + timedelta(hours=2))).problem(422, "weekly-limit-reached")
    assert body["rule"] == "B3"
    # The next local week starts on Monday 00:00, Chicago time.
    monday = day + timedelta(days=5)
    (await book(b, w.resident_id, local(day + timedelta(days=4), 23, 30))).problem(422, "weekly-limit-reached")
    (await book(b, w.resident_id, local(monday, 0))).ok(201)
    # A cancelled visit no longer counts.
    visits = (await a.get("/v1/visits")).ok()
    (await a.post(f"/v1/visits/{visits[0]['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    (await book(b, w.resident_id, start + timedelta(hours=2))).ok(201)


async def test_b4_kiosk_capacity_holds_every_minute(api: Api) -> None:
    w = await build_facility(api, kiosk_count=2)
    others = [await add_resident(w, f"Resident {n}") for n in (2, 3, 4)]
    visitor = await w.approved_visitor(api)
    t = at(api, days=3)
    (await book(visitor, w.resident_id, t)).ok(201)  # :00-:30
    (await book(visitor, others[0], t + timedelta(minutes=15))).ok(201)  # :15-:45
    # :15-:35 would make three at minutes :15-:30: refused
    (await book(visitor, others[1], t + timedelta(minutes=15), length=20)).problem(409, "slot-taken")
    # :30-:60 overlaps only the :15-:45 visit (the first ends as it starts): accepted
    (await book(visitor, others[1], t + timedelta(minutes=30))).ok(201)
    (await book(visitor, others[2], t + timedelta(minutes=30))).problem(409, "slot-taken")
    (await book(visitor, others[2], t + timedelta(minutes=45))).ok(201)  # :15-:45 has ended: one kiosk free


async def test_b4_kiosks_are_counted_per_housing_unit(api: Api) -> None:
    w = await build_facility(api, kiosk_count=1)
    unit_b, _ = await add_unit(api, w)
    in_b = await add_resident(w, "Resident B", unit_b)
    visitor = await w.approved_visitor(api)
    t = at(api, days=3)
    (await book(visitor, w.resident_id, t)).ok(201)
    (await book(visitor, in_b, t)).ok(201)  # another unit's kiosk


async def test_b5_lead_time_and_horizon(api: Api) -> None:
    w = await build_facility(api, min_lead_minutes=24 * 60, booking_horizon_days=7)
    visitor = await w.approved_visitor(api)
    (await book(visitor, w.resident_id, at(api, days=0.5))).problem(422, "too-soon")
    (await book(visitor, w.resident_id, at(api, days=8))).problem(422, "beyond-horizon")
    (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    day = (api.ctx.clock.now()).astimezone(CHICAGO).date()
    slots = (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day + timedelta(days=9)}"
                               "&length_minutes=30")).ok()["slots"]
    starts = [_utc(s["starts_at"]) for s in slots]
    now = api.ctx.clock.now()
    assert min(starts) >= now + timedelta(hours=24) and max(starts) <= now + timedelta(days=7)
    # The first start on the grid after the lead time, or the next one if that would cross local midnight.
    assert min(starts) < now + timedelta(hours=24, minutes=30)


# ------------------------------------------------------------------ B7 kiosk notices


async def test_b7_kiosk_is_told_of_booked_moved_and_cancelled_visits(api: Api) -> None:
    w = await build_facility(api)
    _, other_kiosk = await add_unit(api, w)
    visitor = await w.approved_visitor(api)
    start = at(api)
    visit = (await book(visitor, w.resident_id, start)).ok(201)
    (await w.admin.post(f"/v1/visits/{visit['id']}/move",
                        {"starts_at": at(api, days=3).isoformat()}, idempotency_key=True)).ok()
    (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "sick"}, idempotency_key=True)).ok()
    notes = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert sorted(n["kind"] for n in notes) == ["booked", "cancelled", "moved"]
    assert all(n["resident_name"] == "Resident One" and n["visit_id"] == visit["id"] for n in notes)
    booked = next(n for n in notes if n["kind"] == "booked")
    assert f"{start.astimezone(CHICAGO):%H:%M}" in booked["message"]  # the resident reads local time
    assert (await other_kiosk.get("/v1/kiosk/notifications")).ok() == []
    (await other_kiosk.post(f"/v1/kiosk/notifications/{booked['id']}/ack")).problem(404)
    acked = (await w.kiosk.post(f"/v1/kiosk/notifications/{booked['id']}/ack")).ok()
    assert acked["acknowledged_at"] is not None
    after = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert after[-1]["id"] == booked["id"] and all(n["acknowledged_at"] is None for n in after[:-1])


# ------------------------------------------------------------------ M3, M4, M5


async def test_m3a_visitor_cancelling_with_notice_gets_the_price_back_not_fees(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=24)
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Processing", "kind": "fee", "amount_cents": 100}]})).ok()
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=3))).ok(201)
    assert visit["total_cents"] == 850
    done = (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "plans changed"},
                               idempotency_key=True)).ok()
    assert (done["status"], done["cancelled_by"], done["credited_cents"], done["credit_rule"]) == (
        "cancelled", "visitor", 750, "M3a")
    # A second cancellation changes nothing and credits nothing more.
    (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "again"}, idempotency_key=True)).problem(
        409, "not-cancellable")
    # The credit pays for the next visit before the card (M2, M5).
    nxt = (await book(visitor, w.resident_id, at(api, days=4))).ok(201)
    assert (nxt["credit_used_cents"], nxt["card_charged_cents"]) == (750, 100)


async def test_m4_short_notice_cancellation_earns_no_credit(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48)
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    done = (await visitor.post(f"/v1/visits/{visit['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    assert (done["status"], done["credited_cents"], done["credit_rule"]) == ("cancelled", 0, None)
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0


async def test_m3b_m3d_facility_and_operator_cancellations_always_credit_before_start(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48)
    visitor = await w.approved_visitor(api)
    v1 = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    v2 = (await book(visitor, w.resident_id, at(api, days=1, hours=2))).ok(201)
    v3 = (await book(visitor, w.resident_id, at(api, days=1, hours=4))).ok(201)
    r1 = (await w.officer.post(f"/v1/visits/{v1['id']}/cancel", {"reason": "lockdown"}, idempotency_key=True)).ok()
    r2 = (await w.operator.post(f"/v1/visits/{v2['id']}/cancel", {"reason": "outage"}, idempotency_key=True)).ok()
    r3 = (await w.admin.post(f"/v1/visits/{v3['id']}/cancel", {"reason": "count"}, idempotency_key=True)).ok()
    assert (r1["cancelled_by"], r1["credit_rule"], r1["credited_cents"]) == ("facility", "M3b", 750)
    assert (r2["cancelled_by"], r2["credit_rule"], r2["credited_cents"]) == ("operator", "M3d", 750)
    assert (r3["cancelled_by"], r3["credit_rule"], r3["credited_cents"]) == ("facility", "M3b", 750)
    (await w.investigator.post(f"/v1/visits/{v1['id']}/cancel", {"reason": "x"}, idempotency_key=True)).problem(403)


async def test_m3c_rejected_booking_is_credited_and_m4_no_cancel_after_start(api: Api) -> None:
    w = await build_facility(api, review_mode="manual")
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=2))).ok(201)
    assert v["status"] == "pending_review"
    (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).problem(409, "not-checkable")
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "reject"}, idempotency_key=True)).problem(422)
    (await w.officer.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"}, idempotency_key=True)).problem(403)
    r = (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "reject", "reason": "not on list"},
                            idempotency_key=True)).ok()
    assert (r["status"], r["review_reason"], r["credit_rule"], r["credited_cents"]) == (
        "rejected", "not on list", "M3c", 750)
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"}, idempotency_key=True)).problem(409)
    kinds = [n["kind"] for n in (await w.kiosk.get("/v1/kiosk/notifications")).ok() if n["visit_id"] == v["id"]]
    assert sorted(kinds) == ["booked", "cancelled"]
    v2 = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    (await w.admin.post(f"/v1/visits/{v2['id']}/review", {"decision": "approve"}, idempotency_key=True)).ok()
    await advance_to(api, w.operator, _utc(v2["starts_at"]) + timedelta(minutes=5))
    r = await visitor.post(f"/v1/visits/{v2['id']}/cancel", {"reason": "late"}, idempotency_key=True)
    r.problem(409, "visit-started")
    (await w.operator.post(f"/v1/visits/{v2['id']}/cancel", {"reason": "late"}, idempotency_key=True)).problem(409)
    assert v2["credit_used_cents"] == 750  # paid with v's M3c credit; nothing comes back for v2 (M4)
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0


async def test_m3c_a_booking_still_unreviewed_at_its_start_lapses_with_credit(api: Api) -> None:
    w = await build_facility(api, review_mode="manual")
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    await advance_to(api, w.operator, _utc(v["starts_at"]) + timedelta(minutes=1))
    lapsed = (await visitor.get(f"/v1/visits/{v['id']}")).ok()
    assert (lapsed["status"], lapsed["review_reason"]) == ("rejected", "not reviewed before the start")
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"}, idempotency_key=True)).problem(409)
    lots = (await visitor.get("/v1/me/balance")).ok()["lots"]
    assert [(lot["rule"], lot["amount_cents"]) for lot in lots] == [("M3c", 750)]
    kinds = sorted(n["kind"] for n in (await w.kiosk.get("/v1/kiosk/notifications")).ok())
    assert kinds == ["booked", "cancelled"]


async def test_m5_a_booking_spends_the_credit_that_expires_first(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=24)
    visitor = await w.approved_visitor(api)
    a = (await book(visitor, w.resident_id, at(api, days=5))).ok(201)
    b = (await book(visitor, w.resident_id, at(api, days=6))).ok(201)
    (await visitor.post(f"/v1/visits/{a['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    api.ctx.settings.credit_expiry_days = 30  # the operator shortens the period: b's credit, issued later,
    (await visitor.post(f"/v1/visits/{b['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()  # expires first
    lot_a, lot_b = await credit_lots(api, [a["id"], b["id"]])
    assert lot_b.expires_at < lot_a.expires_at and lot_b.issued_at >= lot_a.issued_at
    (await w.operator.put(f"/v1/facilities/{w.facility_id}/fees", {"fees": [
        {"name": "Processing", "kind": "fee", "amount_cents": 300}]})).ok()
    nxt = (await book(visitor, w.resident_id, at(api, days=7), token=None)).ok(201)
    assert (nxt["total_cents"], nxt["credit_used_cents"], nxt["card_charged_cents"]) == (1050, 1050, 0)
    lot_a, lot_b = await credit_lots(api, [a["id"], b["id"]])
    assert (lot_b.remaining_cents, lot_a.remaining_cents) == (0, 450)
    assert len(api.gateway.settled_charges()) == 2  # a's and b's; the third visit went on credit alone
    # Paying by card only, when asked: the remaining credit stays.
    card = (await book(visitor, w.resident_id, at(api, days=8), use_credit=False)).ok(201)
    assert (card["credit_used_cents"], card["card_charged_cents"]) == (0, 1050)
    assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 450


# ------------------------------------------------------------------ idempotency


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
    # Another key for the same slot is a new booking, and the resident is busy then.
    (await book(visitor, w.resident_id, start, key="booking-key-0002")).problem(409, "resident-busy")
    assert len(api.gateway.settled_charges()) == 1


# ------------------------------------------------------------------ moving


async def test_move_rechecks_every_rule_keeps_the_price_and_ignores_the_visit_itself(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)])
    other = await build_facility(api, operator=w.operator)
    second = await add_resident(w, "Resident Two")
    visitor = await w.approved_visitor(api)
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    v = (await book(visitor, w.resident_id, local(day, 9))).ok(201)
    (await book(visitor, second, local(day, 10))).ok(201)
    moved = (await w.admin.post(f"/v1/visits/{v['id']}/move",
                                {"starts_at": local(day, 9, 15).isoformat()}, idempotency_key=True)).ok()
    assert _utc(moved["starts_at"]) == local(day, 9, 15).astimezone(UTC)  # overlapping only its old self
    (await w.admin.post(f"/v1/visits/{v['id']}/move",
                        {"starts_at": local(day, 10).isoformat()}, idempotency_key=True)).problem(
        409, "slot-taken")
    (await w.admin.post(f"/v1/visits/{v['id']}/move",
                        {"starts_at": local(day, 11, 45).isoformat()}, idempotency_key=True)).problem(
        422, "outside-visitation-window")
    stranger = await w.approved_visitor(api)  # visitors move only their own visits (tests/test_visit_move.py)
    (await stranger.post(f"/v1/visits/{v['id']}/move", {"starts_at": local(day, 11).isoformat()},
                         idempotency_key=True)).problem(404)
    (await other.admin.post(f"/v1/visits/{v['id']}/move",
                            {"starts_at": local(day, 11).isoformat()}, idempotency_key=True)).problem(403)
    (await w.admin.put(f"/v1/facilities/{w.facility_id}/session-options", {"options": [
        {"visit_type": "social", "length_minutes": 30, "price_cents": 900}]})).ok()
    moved = (await w.admin.post(f"/v1/visits/{v['id']}/move",
                                {"starts_at": local(day, 11).isoformat()}, idempotency_key=True)).ok()
    assert (moved["price_cents"], moved["total_cents"], moved["card_charged_cents"]) == (750, 750, 750)
    assert len(api.gateway.settled_charges()) == 2  # moving never charges


# ------------------------------------------------------------------ V3 visibility and listing


async def test_v3_visits_are_seen_by_their_booker_facility_kiosk_and_operator_only(api: Api) -> None:
    w = await build_facility(api)
    other = await build_facility(api, operator=w.operator)
    _, unit_b_kiosk = await add_unit(api, w)
    alice = await w.approved_visitor(api)
    bob = await w.approved_visitor(api)
    start = at(api, days=3)
    v = (await book(alice, w.resident_id, start)).ok(201)
    path = f"/v1/visits/{v['id']}"
    (await bob.get(path)).problem(404)
    (await bob.post(f"{path}/cancel", {"reason": "x"}, idempotency_key=True)).problem(404)
    (await other.admin.get(path)).problem(403)
    (await other.officer.post(f"{path}/cancel", {"reason": "x"}, idempotency_key=True)).problem(403)
    (await unit_b_kiosk.get(path)).problem(403)
    (await unit_b_kiosk.post(f"{path}/check-in")).problem(403)
    for viewer in (alice, w.admin, w.officer, w.investigator, w.kiosk, w.operator):
        assert (await viewer.get(path)).ok()["resident_name"] == "Resident One"
    (await alice.get("/v1/visits/no-such-visit")).problem(404)

    assert (await bob.get("/v1/visits")).ok() == []
    assert [x["id"] for x in (await alice.get("/v1/visits")).ok()] == [v["id"]]
    assert (await other.admin.get("/v1/visits")).ok() == []
    (await other.admin.get(f"/v1/visits?facility_id={w.facility_id}")).problem(403)
    assert (await w.operator.get(f"/v1/visits?facility_id={other.facility_id}")).ok() == []
    assert [x["id"] for x in (await w.operator.get(f"/v1/visits?facility_id={w.facility_id}")).ok()] == [v["id"]]
    assert (await unit_b_kiosk.get("/v1/visits")).ok() == []

    def ids(rows: list[dict[str, str]]) -> list[str]:
        return [x["id"] for x in rows]

    day = start.astimezone(CHICAGO).date()
    admin = w.admin
    assert ids((await admin.get(f"/v1/visits?status=scheduled&resident_id={w.resident_id}")).ok()) == [v["id"]]
    assert (await admin.get("/v1/visits?status=cancelled")).ok() == []
    (await admin.get("/v1/visits?status=nonsense")).problem(422)
    assert ids((await admin.get(f"/v1/visits?from={day}&to={day}")).ok()) == [v["id"]]
    assert (await admin.get(f"/v1/visits?from={day + timedelta(days=1)}")).ok() == []
    assert (await admin.get(f"/v1/visits?to={day - timedelta(days=1)}")).ok() == []
    just_after = quote((start + timedelta(minutes=1)).isoformat())
    assert (await admin.get(f"/v1/visits?from={just_after}")).ok() == []
    assert ids((await admin.get(f"/v1/visits?to={just_after}")).ok()) == [v["id"]]
    assert ids((await alice.get(f"/v1/visits?from={day}&to={day}")).ok()) == [v["id"]]


# ------------------------------------------------------------------ S6 check-in


async def test_s6_kiosk_check_in_window_and_unit(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).problem(409, "check-in-not-open")
    upcoming = (await w.kiosk.get("/v1/visits")).ok()
    assert [x["id"] for x in upcoming] == [v["id"]]
    (await visitor.post(f"/v1/visits/{v['id']}/check-in")).problem(403)
    starts = _utc(v["starts_at"])
    await advance_to(api, w.operator, starts - timedelta(minutes=11))
    (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).problem(409, "check-in-not-open")
    await advance_to(api, w.operator, starts - timedelta(minutes=9))
    checked = (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).ok()
    assert starts - timedelta(minutes=10) <= _utc(checked["resident_checked_in_at"]) < starts
    again = (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).ok()  # a second tap changes nothing
    assert again["resident_checked_in_at"] == checked["resident_checked_in_at"]
    late = (await visitor.post("/v1/visits", {"resident_id": w.resident_id, "starts_at": at(api, days=1).isoformat(),
                                              "length_minutes": 30, "payment": {"card_token": "tok_visa"}},
                               idempotency_key=True)).ok(201)
    await advance_to(api, w.operator, _utc(late["ends_at"]) + timedelta(minutes=1))
    (await w.kiosk.post(f"/v1/visits/{late['id']}/check-in")).problem(409)


# ------------------------------------------------------------------ availability


async def test_availability_lists_exactly_the_bookable_slots(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "11:00"} for d in range(7)])
    visitor = await w.approved_visitor(api)
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    path = f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=30"
    answer = (await visitor.get(path)).ok()
    assert answer["timezone"] == "America/Chicago"
    slots = answer["slots"]
    assert [s["local_start"][11:16] for s in slots] == ["09:00", "09:15", "09:30", "09:45", "10:00", "10:15",
                                                         "10:30"]
    assert all(_utc(s["local_start"]) == _utc(s["starts_at"]) for s in slots)
    first = _utc(slots[0]["starts_at"])
    (await book(visitor, w.resident_id, first)).ok(201)
    after = [s["local_start"][11:16] for s in (await visitor.get(path)).ok()["slots"]]
    assert after == ["09:30", "09:45", "10:00", "10:15", "10:30"]
    # Every listed slot is bookable, and nothing else is (checked through quotes).
    for minute in range(0, 120, 15):
        t = local(day, 9) + timedelta(minutes=minute)
        q = (await visitor.post("/v1/quotes", {"resident_id": w.resident_id, "starts_at": t.isoformat(),
                                               "length_minutes": 30})).ok()
        assert q["bookable"] == (f"{t:%H:%M}" in after), (t, q["problems"])
    (await w.officer.get(path)).ok()
    other = await build_facility(api, operator=w.operator)
    (await other.admin.get(path)).problem(403)
    (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day + timedelta(days=31)}"
                       "&length_minutes=30")).problem(422)
    (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=25")).problem(
        422, "length-not-offered")
    (await visitor.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=30"
                       "&visit_type=privileged")).problem(403)
    stranger = await api.sign_up()
    (await stranger.get(path)).problem(403)
