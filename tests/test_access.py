"""Visitor access (V1) and attorney Bar verification (V2)."""

from __future__ import annotations

from tests.support import Api
from tests.support_facility import PNG, build_facility


async def test_v1_access_needs_a_photo_id_and_a_decision(api: Api) -> None:
    w = await build_facility(api)
    visitor = await api.sign_up()
    path = f"/v1/facilities/{w.facility_id}/access-requests"
    (await visitor.post(path)).problem(422, "photo-id-required")
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    req = (await visitor.post(path)).ok(201)
    (await visitor.post(path)).problem(409, "already-requested")
    pending = (await w.admin.get(f"{path}?status=pending")).ok()
    assert [p["id"] for p in pending] == [req["id"]]
    photo = await w.admin.get(f"{path}/{req['id']}/photo-id")
    assert photo.status == 200 and photo.body == PNG
    (await w.officer.get(f"{path}/{req['id']}/photo-id")).problem(403)
    (await visitor.get(f"{path}/{req['id']}/photo-id")).problem(403)
    (await w.admin.post(f"{path}/{req['id']}/decision", {"decision": "deny"})).problem(422)
    denied = (await w.admin.post(f"{path}/{req['id']}/decision",
                                 {"decision": "deny", "reason": "ID photo unreadable"})).ok()
    assert denied["status"] == "denied" and denied["reason"] == "ID photo unreadable"
    (await w.admin.post(f"{path}/{req['id']}/decision", {"decision": "approve"})).problem(409)
    # a denied visitor may re-apply
    again = (await visitor.post(path)).ok(201)
    (await w.admin.post(f"{path}/{again['id']}/decision", {"decision": "approve"})).ok()
    mine = (await visitor.get("/v1/me/access-requests")).ok()
    assert [m["status"] for m in mine] == ["approved", "denied"]


async def test_v2_bar_verification_is_per_facility(api: Api) -> None:
    op = await api.operator()
    here = await build_facility(api, operator=op)
    there = await build_facility(api, operator=op)
    attorney = await here.approved_visitor(api, role="attorney")
    mine = (await attorney.get("/v1/me/bar-verifications")).ok()
    assert [(m["facility_id"], m["status"]) for m in mine] == [(here.facility_id, "verified")]
    ver = (await attorney.post(f"/v1/facilities/{there.facility_id}/bar-verifications")).ok(201)
    assert ver["status"] == "pending"
    (await here.admin.post(f"/v1/facilities/{there.facility_id}/bar-verifications/{ver['id']}/decision",
                           {"decision": "verify"})).problem(403)
    (await there.admin.post(f"/v1/facilities/{there.facility_id}/bar-verifications/{ver['id']}/decision",
                            {"decision": "reject"})).problem(422)
    rejected = (await there.admin.post(f"/v1/facilities/{there.facility_id}/bar-verifications/{ver['id']}/decision",
                                       {"decision": "reject", "reason": "Bar number not found"})).ok()
    assert rejected["status"] == "rejected"
    visitor = await api.sign_up()
    (await visitor.post(f"/v1/facilities/{here.facility_id}/bar-verifications")).problem(403)
