"""POST /v1/visits/{id}/move and GET /v1/visits/{id}/move-options (issue 13): the booker moves
their own visit until the facility's cancellation notice before its current start (A6, M3a), to a
time that meets every booking rule (B2-B5), still approved (V1) and verified for privileged visits
(V2); the price stays and nothing is charged (B1); the kiosk is told (B7); the move is audited;
under manual review the new time waits for approval (A7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update

from control_api.db.models import AccessRequest, BarVerification, LedgerEntry, LedgerTransaction
from control_api.services import audit
from tests.support import Api, As, Response
from tests.support_booking import add_resident, at, book, local
from tests.support_facility import build_facility

CHICAGO = ZoneInfo("America/Chicago")


async def move(who: As, visit_id: str, starts_at: datetime, key: str | bool = True) -> Response:
    return await who.post(f"/v1/visits/{visit_id}/move", {"starts_at": starts_at.isoformat()}, idempotency_key=key)


async def ledger_rows(api: Api) -> tuple[int, int]:
    async with api.ctx.sessions() as s:
        return (int(await s.scalar(select(func.count()).select_from(LedgerTransaction)) or 0),
                int(await s.scalar(select(func.count()).select_from(LedgerEntry)) or 0))


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def test_visitor_moves_own_visit_kiosk_told_audited_nothing_charged(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=24, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=3))).ok(201)
    ledger, charges = await ledger_rows(api), len(api.gateway.settled_charges())
    before = (await w.visitor.get(f"/v1/visits/{v['id']}/move-options")).ok()
    assert (before["movable"], before["reason"], before["review_after_move"]) == (True, "allowed", False)
    assert utc(before["move_deadline"]) == utc(v["starts_at"]) - timedelta(hours=24)  # A6, M3a
    new = at(api, days=4)
    moved = (await move(w.visitor, v["id"], new, key="move-key-0001")).ok()
    assert utc(moved["starts_at"]) == new.astimezone(UTC) and moved["status"] == "scheduled"
    assert utc(moved["ends_at"]) == new.astimezone(UTC) + timedelta(minutes=30)
    # B1: same type, length and price; nothing charged, no ledger movement at all
    assert (moved["visit_type"], moved["length_minutes"], moved["price_cents"], moved["total_cents"]) == (
        "social", 30, v["price_cents"], v["total_cents"])
    assert await ledger_rows(api) == ledger and len(api.gateway.settled_charges()) == charges
    # B7: the resident's kiosk is told, with the old time
    notes = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    moved_notes = [n for n in notes if n["kind"] == "moved"]
    assert len(moved_notes) == 1 and "moved" in moved_notes[0]["message"] and "was" in moved_notes[0]["message"]
    # audited with the old and the new start, and who moved it
    async with api.ctx.sessions() as s:
        entries = [e for e in await audit.for_visit(s, v["id"]) if e.action == "visit.moved"]
    assert len(entries) == 1 and entries[0].actor_id == w.visitor.principal_id and entries[0].actor_role == "visitor"
    assert utc(entries[0].detail["from"]) == utc(v["starts_at"]) and utc(entries[0].detail["to"]) == new

    # idempotent: the same key replays the answer; the same key with another body is refused
    again = await move(w.visitor, v["id"], new, key="move-key-0001")
    assert again.ok() == moved and again.headers.get("Idempotent-Replayed") == "true"
    (await move(w.visitor, v["id"], at(api, days=5), key="move-key-0001")).problem(422, "idempotency-key-reused")
    (await move(w.visitor, v["id"], new, key=False)).problem(400, "idempotency-key-required")
    # a new key to where it already is changes nothing and tells nobody again
    assert utc((await move(w.visitor, v["id"], new)).ok()["starts_at"]) == new.astimezone(UTC)
    notes = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert [n["kind"] for n in notes].count("moved") == 1
    assert await ledger_rows(api) == ledger


async def test_others_visits_are_404_other_staff_403_and_admins_keep_their_power(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=1))).ok(201)  # inside the visitor's notice
    stranger = await w.approved_visitor(api)
    (await move(stranger, v["id"], at(api, days=2))).problem(404)
    (await stranger.get(f"/v1/visits/{v['id']}/move-options")).problem(404)
    other = await build_facility(api, operator=w.operator)
    (await move(other.admin, v["id"], at(api, days=2))).problem(403)  # V3
    (await move(w.officer, v["id"], at(api, days=2))).problem(403)
    (await w.operator.get(f"/v1/visits/{v['id']}/move-options")).problem(403)
    # the facility's admin moves it even inside the notice (no deadline for staff)
    options = (await w.admin.get(f"/v1/visits/{v['id']}/move-options")).ok()
    assert (options["movable"], options["move_deadline"]) == (True, None)
    moved = (await move(w.admin, v["id"], at(api, days=2))).ok()
    assert moved["status"] == "scheduled"
    async with api.ctx.sessions() as s:
        entries = [e for e in await audit.for_visit(s, v["id"]) if e.action == "visit.moved"]
    assert [e.actor_role for e in entries] == ["admin"]


async def test_too_late_to_move_is_409_naming_the_deadline_and_the_page_knows_first(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=1))).ok(201)
    deadline = utc(v["starts_at"]) - timedelta(hours=48)
    options = (await w.visitor.get(f"/v1/visits/{v['id']}/move-options")).ok()
    assert (options["movable"], options["reason"], options["slots"]) == (False, "too_late", [])
    assert utc(options["move_deadline"]) == deadline and "48 hours" in options["detail"]
    problem = (await move(w.visitor, v["id"], at(api, days=3))).problem(409, "too-late-to-move")
    local_deadline = deadline.astimezone(CHICAGO)
    assert "48 hours" in problem["detail"] and f"{local_deadline:%H:%M}" in problem["detail"]
    assert utc(problem["move_deadline"]) == deadline
    assert (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()["starts_at"] == v["starts_at"]
    # cancelling is still possible (without credit, M3a)
    done = (await w.visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    assert done["credited_cents"] == 0
    (await move(w.visitor, v["id"], at(api, days=3))).problem(409, "not-movable")


async def test_the_new_time_meets_every_booking_rule(api: Api) -> None:
    """B2 window, B3 resident busy, B5 lead time and horizon; the visit does not compete with itself."""
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)],
                             cancellation_notice_hours=24, min_lead_minutes=24 * 60, booking_horizon_days=10,
                             visitor=True)
    assert w.visitor is not None
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    v = (await book(w.visitor, w.resident_id, local(day, 9))).ok(201)
    other_visitor = await w.approved_visitor(api)
    (await book(other_visitor, w.resident_id, local(day, 10, 30))).ok(201)
    outside = (await move(w.visitor, v["id"], local(day, 11, 45))).problem(422, "outside-visitation-window")
    assert outside["rule"] == "B2"
    busy = (await move(w.visitor, v["id"], local(day, 10, 15))).problem(409, "resident-busy")
    assert busy["rule"] == "B3"
    far = (await move(w.visitor, v["id"], local(day + timedelta(days=9), 9))).problem(422, "beyond-horizon")
    assert far["rule"] == "B5"
    soon = (await move(w.visitor, v["id"], at(api, days=0, hours=2))).problem(422, "too-soon")
    assert soon["rule"] == "B5"
    assert (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()["starts_at"] == v["starts_at"]
    # overlapping only its own old time is fine
    moved = (await move(w.visitor, v["id"], local(day, 9, 15))).ok()
    assert utc(moved["starts_at"]) == local(day, 9, 15).astimezone(UTC)


async def test_move_options_list_times_as_the_move_accepts_them(api: Api) -> None:
    w = await build_facility(api, windows=[{"weekday": d, "start": "09:00", "end": "12:00"} for d in range(7)],
                             visitor=True)
    assert w.visitor is not None
    second = await add_resident(w, "Resident Two")
    day = (api.ctx.clock.now() + timedelta(days=3)).astimezone(CHICAGO).date()
    v = (await book(w.visitor, w.resident_id, local(day, 9))).ok(201)
    (await book(w.visitor, second, local(day, 10))).ok(201)  # holds the only kiosk 10:00-10:30
    options = (await w.visitor.get(f"/v1/visits/{v['id']}/move-options?from={day}&to={day}")).ok()
    assert (options["timezone"], options["length_minutes"], options["first"], options["last"]) == (
        "America/Chicago", 30, day.isoformat(), day.isoformat())
    starts = [utc(s["starts_at"]).astimezone(CHICAGO).strftime("%H:%M") for s in options["slots"]]
    # its own time is left out; times overlapping only itself are in; the other visit's kiosk time is not
    assert "09:00" not in starts and "09:15" in starts and "09:30" in starts
    assert not {"09:45", "10:00", "10:15"} & set(starts) and "10:30" in starts and "11:30" in starts
    assert options["slots"][0]["local_start"].startswith(f"{day.isoformat()}T09:15")
    for hhmm in ("09:15", "10:30"):
        hour, minute = map(int, hhmm.split(":"))
        (await move(w.visitor, v["id"], local(day, hour, minute))).ok()
    default = (await w.visitor.get(f"/v1/visits/{v['id']}/move-options")).ok()
    assert (datetime.fromisoformat(default["last"]) - datetime.fromisoformat(default["first"])).days == 6
    (await w.visitor.get(f"/v1/visits/{v['id']}/move-options?from={day}&to={day - timedelta(days=1)}")).problem(422)
    (await w.visitor.get(f"/v1/visits/{v['id']}/move-options?from={day}&to={day + timedelta(days=40)}")).problem(422)


async def _set_status(api: Api, model: Any, owner_column: Any, owner: str, status: str) -> None:
    async with api.ctx.sessions() as s, s.begin():
        await s.execute(update(model).where(owner_column == owner).values(status=status))


async def test_a_visitor_no_longer_approved_cannot_move(api: Api) -> None:
    """V1: access withdrawn after booking (set directly: there is no revoke route yet)."""
    w = await build_facility(api, visitor=True)
    assert w.visitor is not None and w.visitor.principal_id is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=3))).ok(201)
    await _set_status(api, AccessRequest, AccessRequest.visitor_id, w.visitor.principal_id, "denied")
    options = (await w.visitor.get(f"/v1/visits/{v['id']}/move-options")).ok()
    assert (options["movable"], options["reason"], options["slots"]) == (False, "no_access", [])
    assert "V1" in options["detail"]
    assert "V1" in (await move(w.visitor, v["id"], at(api, days=4))).problem(403)["detail"]
    assert (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()["starts_at"] == v["starts_at"]


async def test_an_attorney_no_longer_verified_cannot_move_a_privileged_visit(api: Api) -> None:
    """V2: the Bar verification withdrawn after booking; social visits still move."""
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None and w.attorney.principal_id is not None
    privileged = (await book(w.attorney, w.resident_id, at(api, days=3), visit_type="privileged")).ok(201)
    social = (await book(w.attorney, w.resident_id, at(api, days=5))).ok(201)
    await _set_status(api, BarVerification, BarVerification.attorney_id, w.attorney.principal_id, "rejected")
    options = (await w.attorney.get(f"/v1/visits/{privileged['id']}/move-options")).ok()
    assert (options["movable"], options["reason"]) == (False, "no_access") and "V2" in options["detail"]
    problem = (await move(w.attorney, privileged["id"], at(api, days=4))).problem(403)
    assert "V2" in problem["detail"]
    assert (await move(w.attorney, social["id"], at(api, days=6))).ok()["visit_type"] == "social"


async def test_a7_under_manual_review_the_bookers_new_time_waits_for_approval(api: Api) -> None:
    w = await build_facility(api, review_mode="manual", visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=3))).ok(201)
    assert v["status"] == "pending_review"
    (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"}, idempotency_key=True)).ok()
    assert (await w.visitor.get(f"/v1/visits/{v['id']}/move-options")).ok()["review_after_move"] is True
    moved = (await move(w.visitor, v["id"], at(api, days=4))).ok()
    assert moved["status"] == "pending_review"
    note = next(n for n in (await w.kiosk.get("/v1/kiosk/notifications")).ok() if n["kind"] == "moved")
    assert "approval" in note["message"]
    approved = (await w.admin.post(f"/v1/visits/{v['id']}/review", {"decision": "approve"},
                                   idempotency_key=True)).ok()
    assert approved["status"] == "scheduled"
    # the facility's own move needs no second review
    assert (await w.admin.get(f"/v1/visits/{v['id']}/move-options")).ok()["review_after_move"] is False
    assert (await move(w.admin, v["id"], at(api, days=5))).ok()["status"] == "scheduled"
