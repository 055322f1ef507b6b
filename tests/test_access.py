"""Visitor access (V1), attorney Bar verification (V2), and the photo ID seen only by the facility (V3)."""

from __future__ import annotations

import asyncio

from control_api.services.access import has_approved_access, is_verified_attorney
from tests.support import Api, As
from tests.support_facility import PNG, FacilityWorld, build_facility


async def _with_photo_id(api: Api, role: str = "visitor") -> As:
    visitor = await api.sign_up(role)
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    return visitor


async def _access(api: Api, visitor: As, w: FacilityWorld) -> tuple[bool, bool]:
    async with api.ctx.read_sessions() as s:
        assert visitor.principal_id is not None
        return (await has_approved_access(s, visitor.principal_id, w.facility_id),
                await is_verified_attorney(s, visitor.principal_id, w.facility_id))


async def test_v1_access_needs_a_photo_id_and_a_decision(api: Api) -> None:
    w = await build_facility(api)
    visitor = await api.sign_up()
    path = w.path("/access-requests")
    (await visitor.post(path)).problem(422, "photo-id-required")
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    req = (await visitor.post(path)).ok(201)
    assert req["status"] == "pending" and req["applicant"] is None  # visitors get no reviewer view
    (await visitor.post(path)).problem(409, "already-requested")
    assert await _access(api, visitor, w) == (False, False)
    pending = (await w.admin.get(f"{path}?status=pending")).ok()
    assert [p["id"] for p in pending] == [req["id"]]
    applicant = pending[0]["applicant"]  # what the admin compares with the photo ID
    assert applicant["date_of_birth"] == "1980-05-17" and applicant["has_photo_id"] is True
    assert applicant["postal_address"].startswith("1 Main Street")
    (await w.admin.get(f"{path}?status=maybe")).problem(422)
    (await w.admin.post(f"{path}/{req['id']}/decision", {"decision": "deny"})).problem(422)
    (await w.admin.post(f"{path}/{req['id']}/decision", {"decision": "deny", "reason": "  "})).problem(422)
    denied = (await w.admin.post(f"{path}/{req['id']}/decision",
                                 {"decision": "deny", "reason": "ID photo unreadable"})).ok()
    assert denied["status"] == "denied" and denied["reason"] == "ID photo unreadable"
    (await w.admin.post(f"{path}/{req['id']}/decision", {"decision": "approve"})).problem(409, "already-decided")
    assert await _access(api, visitor, w) == (False, False)
    # a denied visitor may re-apply, and sees the reason of the denial
    again = (await visitor.post(path)).ok(201)
    approved = (await w.admin.post(f"{path}/{again['id']}/decision", {"decision": "approve"})).ok()
    assert approved["status"] == "approved" and approved["decided_at"] is not None
    (await visitor.post(path)).problem(409, "already-requested")
    mine = (await visitor.get("/v1/me/access-requests")).ok()
    assert [(m["status"], m["reason"]) for m in mine] == [("approved", None), ("denied", "ID photo unreadable")]
    assert await _access(api, visitor, w) == (True, False)
    assert [p["id"] for p in (await w.admin.get(f"{path}?status=approved")).ok()] == [again["id"]]


async def test_v1_access_is_per_facility_and_listings_are_scoped(api: Api) -> None:
    op = await api.operator()
    here = await build_facility(api, operator=op)
    there = await build_facility(api, operator=op)
    visitor = await here.approved_visitor(api)
    other_visitor = await _with_photo_id(api)
    assert await _access(api, visitor, here) == (True, False)
    assert await _access(api, visitor, there) == (False, False)
    mine = (await visitor.post(there.path("/access-requests"))).ok(201)
    theirs = (await other_visitor.post(there.path("/access-requests"))).ok(201)
    assert [r["id"] for r in (await there.admin.get(there.path("/access-requests"))).ok()] == [mine["id"],
                                                                                                 theirs["id"]]
    assert all(r["facility_id"] == here.facility_id for r in (await here.admin.get(here.path("/access-requests"))
                                                                ).ok())
    assert len((await visitor.get("/v1/me/access-requests")).ok()) == 2
    assert [r["id"] for r in (await other_visitor.get("/v1/me/access-requests")).ok()] == [theirs["id"]]
    # V3: another facility's admin can neither list nor decide, even through its own path
    (await here.admin.get(there.path("/access-requests"))).problem(403)
    (await here.admin.post(there.path(f"/access-requests/{mine['id']}/decision"), {"decision": "approve"})
     ).problem(403)
    (await here.admin.post(here.path(f"/access-requests/{mine['id']}/decision"), {"decision": "approve"})
     ).problem(404)
    (await there.officer.post(there.path(f"/access-requests/{mine['id']}/decision"), {"decision": "approve"})
     ).problem(403)
    (await visitor.post(there.path(f"/access-requests/{mine['id']}/decision"), {"decision": "approve"})).problem(403)
    (await there.investigator.get(there.path("/access-requests"))).problem(403)
    assert await _access(api, visitor, there) == (False, False)
    (await visitor.post("/v1/facilities/00000000-0000-4000-8000-000000000000/access-requests")).problem(404)
    (await here.admin.post(here.path("/access-requests"))).problem(403)  # staff do not apply


async def test_v1_photo_id_is_seen_only_by_the_facility_admin(api: Api) -> None:
    op = await api.operator()
    w = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    visitor = await _with_photo_id(api)
    req = (await visitor.post(w.path("/access-requests"))).ok(201)
    path = w.path(f"/access-requests/{req['id']}/photo-id")
    photo = await w.admin.get(path)
    assert photo.status == 200 and photo.body == PNG
    assert photo.headers["Content-Type"] == "image/png" and photo.headers["Cache-Control"] == "no-store"
    assert (await op.get(path)).body == PNG
    for caller in (w.officer, w.investigator, w.kiosk, visitor, other.admin):
        (await caller.get(path)).problem(403)
    (await api.anonymous.get(path)).problem(401)
    (await other.admin.get(other.path(f"/access-requests/{req['id']}/photo-id"))).problem(404)
    (await w.admin.get(w.path("/access-requests/00000000-0000-4000-8000-000000000000/photo-id"))).problem(404)


async def test_v2_bar_verification_is_per_facility(api: Api) -> None:
    op = await api.operator()
    here = await build_facility(api, operator=op)
    there = await build_facility(api, operator=op)
    attorney = await here.approved_visitor(api, role="attorney")
    assert await _access(api, attorney, here) == (True, True)
    assert await _access(api, attorney, there) == (False, False)
    mine = (await attorney.get("/v1/me/bar-verifications")).ok()
    assert [(m["facility_id"], m["status"]) for m in mine] == [(here.facility_id, "verified")]
    (await attorney.post(here.path("/bar-verifications"))).problem(409, "already-requested")
    ver = (await attorney.post(there.path("/bar-verifications"))).ok(201)
    assert ver["status"] == "pending" and ver["bar_state"] == "IL" and ver["bar_number"].startswith("BAR")
    (await attorney.post(there.path("/bar-verifications"))).problem(409, "already-requested")
    assert [v["id"] for v in (await there.admin.get(there.path("/bar-verifications?status=pending"))).ok()] == [
        ver["id"]]
    (await there.admin.get(there.path("/bar-verifications?status=approved"))).problem(422)
    (await here.admin.get(there.path("/bar-verifications"))).problem(403)
    decision = there.path(f"/bar-verifications/{ver['id']}/decision")
    (await here.admin.post(decision, {"decision": "verify"})).problem(403)
    (await here.admin.post(here.path(f"/bar-verifications/{ver['id']}/decision"), {"decision": "verify"})
     ).problem(404)
    (await there.officer.post(decision, {"decision": "verify"})).problem(403)
    (await attorney.post(decision, {"decision": "verify"})).problem(403)
    (await there.admin.post(decision, {"decision": "reject"})).problem(422)
    rejected = (await there.admin.post(decision, {"decision": "reject", "reason": "Bar number not found"})).ok()
    assert rejected["status"] == "rejected" and rejected["reason"] == "Bar number not found"
    (await there.admin.post(decision, {"decision": "verify"})).problem(409, "already-decided")
    assert await _access(api, attorney, there) == (False, False)
    # a rejected attorney may ask again; verification there is independent of here
    again = (await attorney.post(there.path("/bar-verifications"))).ok(201)
    (await there.admin.post(there.path(f"/bar-verifications/{again['id']}/decision"), {"decision": "verify"})).ok()
    assert await _access(api, attorney, there) == (False, True)  # verified Bar number, access still to approve
    assert [v["status"] for v in (await there.admin.get(there.path("/bar-verifications?status=rejected"))).ok()
            ] == ["rejected"]


async def test_v2_only_attorneys_with_a_bar_number_ask_for_verification(api: Api) -> None:
    w = await build_facility(api)
    visitor = await _with_photo_id(api)
    (await visitor.post(w.path("/bar-verifications"))).problem(403)
    (await visitor.get("/v1/me/bar-verifications")).problem(403)
    (await w.admin.post(w.path("/bar-verifications"))).problem(403)
    (await visitor.get(w.path("/bar-verifications"))).problem(403)


async def test_v1_simultaneous_requests_open_only_one(api: Api) -> None:
    """The one-open-request rule holds under a race (the visitor's row is locked while checking).
    Several rounds, since the first one mostly waits for new database connections."""
    w = await build_facility(api)
    for _ in range(3):
        visitor = await _with_photo_id(api)
        results = await asyncio.gather(*(visitor.post(w.path("/access-requests")) for _ in range(8)))
        assert sorted(r.status for r in results) == [201] + [409] * 7
    assert len((await w.admin.get(w.path("/access-requests"))).ok()) == 3
    req = next(r.body for r in results if r.status == 201)
    decisions = await asyncio.gather(*(
        w.admin.post(w.path(f"/access-requests/{req['id']}/decision"), {"decision": d, "reason": "r"})
        for d in ("approve", "deny", "approve", "deny")))
    assert sorted(r.status for r in decisions) == [200, 409, 409, 409]
