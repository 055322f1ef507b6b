"""Facility configuration: rules A1-A8, M7 fees, M8 billing mode and caps, V3 isolation."""

from __future__ import annotations

from control_api.auth import Role
from tests.support import Api
from tests.support_facility import build_facility


async def test_a1_timezone_must_be_an_iana_zone(api: Api) -> None:
    op = await api.operator()
    r = await op.post("/v1/facilities", {"name": "X", "timezone": "UTC-5"})
    assert "A1" in r.problem(422, "validation-error")["detail"]
    r = await op.post("/v1/facilities", {"name": "X", "timezone": "Mars/Olympus"})
    r.problem(422)
    ok = (await op.post("/v1/facilities", {"name": "X", "timezone": "America/New_York"})).ok(201)
    assert ok["timezone"] == "America/New_York"


async def test_a2_windows_replace_atomically_and_overlaps_are_refused(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}/housing-units/{w.unit_id}/windows"
    r = await w.admin.put(path, {"windows": [{"weekday": 0, "start": "08:00", "end": "11:00"},
                                             {"weekday": 0, "start": "10:30", "end": "12:00"}]})
    body = r.problem(422, "invalid-windows")
    assert "overlaps" in body["detail"]
    r = await w.admin.put(path, {"windows": [{"weekday": 0, "start": "11:00", "end": "08:00"}]})
    r.problem(422)
    # nothing changed: still the all-day windows from setup
    assert len((await w.admin.get(path)).ok()) == 7
    saved = (await w.admin.put(path, {"windows": [{"weekday": 0, "start": "08:00", "end": "11:00"}]})).ok()
    assert saved == [{"weekday": 0, "weekday_name": "Monday", "start": "08:00", "end": "11:00"}]


async def test_a2_closures_are_facility_or_unit_wide(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}/closures"
    r = await w.admin.post(path, {"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
                                  "reason": "x"})
    r.problem(422)
    r = await w.admin.post(path, {"starts_at": "2030-01-01T00:00:00", "ends_at": "2030-01-02T00:00:00Z",
                                  "reason": "naive times are ambiguous"})
    r.problem(422)
    c = (await w.admin.post(path, {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z",
                                   "reason": "lockdown", "housing_unit_id": w.unit_id})).ok(201)
    assert c["housing_unit_id"] == w.unit_id
    (await w.admin.delete(f"{path}/{c['id']}")).ok()
    assert (await w.admin.get(path)).ok() == []


async def test_a3_session_lengths_and_prices_per_type(api: Api) -> None:
    w = await build_facility(api)
    options = (await w.admin.get(f"/v1/facilities/{w.facility_id}/session-options")).ok()
    assert {(o["visit_type"], o["length_minutes"]) for o in options} == {
        ("social", 30), ("social", 20), ("privileged", 30)}
    r = await w.admin.put(f"/v1/facilities/{w.facility_id}/session-options", {"options": [
        {"visit_type": "social", "length_minutes": 30, "price_cents": 1},
        {"visit_type": "social", "length_minutes": 30, "price_cents": 2}]})
    r.problem(422, "duplicate-option")
    r = await w.admin.put(f"/v1/facilities/{w.facility_id}/session-options", {"options": [
        {"visit_type": "social", "length_minutes": 30, "price_cents": -1}]})
    r.problem(422)


async def test_a4_kiosk_count_is_configured_per_unit(api: Api) -> None:
    w = await build_facility(api, kiosk_count=3)
    units = (await w.admin.get(f"/v1/facilities/{w.facility_id}/housing-units")).ok()
    assert units[0]["kiosk_count"] == 3
    r = await w.admin.patch(f"/v1/facilities/{w.facility_id}/housing-units/{w.unit_id}", {"kiosk_count": -1})
    r.problem(422)
    assert (await w.admin.patch(f"/v1/facilities/{w.facility_id}/housing-units/{w.unit_id}",
                                {"kiosk_count": 2})).ok()["kiosk_count"] == 2


async def test_a5_a6_a7_a8_settings_are_validated_and_stored(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}"
    for bad in ({"booking_horizon_days": 0}, {"min_lead_minutes": -1}, {"cancellation_notice_hours": -1},
                {"weekly_visit_limit": 0}, {"review_mode": "sometimes"}, {"retention_days": 0}, {"unknown": 1}):
        (await w.admin.patch(path, bad)).problem(422)
    updated = (await w.admin.patch(path, {"booking_horizon_days": 21, "min_lead_minutes": 120,
                                          "cancellation_notice_hours": 48, "weekly_visit_limit": 2,
                                          "review_mode": "manual", "retention_days": 90})).ok()
    assert (updated["booking_horizon_days"], updated["min_lead_minutes"], updated["cancellation_notice_hours"],
            updated["weekly_visit_limit"], updated["review_mode"], updated["retention_days"]) == (
        21, 120, 48, 2, "manual", 90)


async def test_m8_per_minute_rate_above_cap_is_refused_with_cap_in_message(api: Api) -> None:
    w = await build_facility(api, size_tier="jail_100_349")
    path = f"/v1/facilities/{w.facility_id}"
    # setup options carry 20 cents/min: switching to per-minute is fine under the 21-cent cap
    (await w.admin.patch(path, {"billing_mode": "per_minute"})).ok()
    r = await w.admin.put(f"{path}/session-options", {"options": [
        {"visit_type": "social", "length_minutes": 30, "per_minute_cents": 22}]})
    body = r.problem(422, "rate-above-cap")
    assert "$0.21/min" in body["detail"] and "M8" in body["detail"]
    # moving to a tier with a lower cap is refused too, and nothing changes
    r = await w.admin.patch(path, {"size_tier": "jail_1000_plus"})
    assert "$0.19/min" in r.problem(422, "rate-above-cap")["detail"]
    assert (await w.admin.get(path)).ok()["size_tier"] == "jail_100_349"
    assert (await w.admin.patch(path, {"size_tier": "jail_under_50"})).ok()["size_tier"] == "jail_under_50"


async def test_m7_fees_default_to_none_and_only_the_operator_sets_them(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}/fees"
    assert (await w.admin.get(path)).ok() == []
    (await w.admin.put(path, {"fees": [{"name": "Convenience", "kind": "fee", "amount_cents": 100}]})).problem(403)
    fees = (await w.operator.put(path, {"fees": [{"name": "Sales tax", "kind": "tax", "rate_basis_points": 625}]})).ok()
    assert fees[0]["rate_basis_points"] == 625


async def test_v3_staff_never_see_or_change_another_facility(api: Api) -> None:
    op = await api.operator()
    mine = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    for path in (f"/v1/facilities/{other.facility_id}", f"/v1/facilities/{other.facility_id}/residents",
                 f"/v1/facilities/{other.facility_id}/kiosks", f"/v1/facilities/{other.facility_id}/staff"):
        (await mine.admin.get(path)).problem(403)
    (await mine.admin.patch(f"/v1/facilities/{other.facility_id}", {"name": "hijacked"})).problem(403)
    (await mine.admin.post(f"/v1/facilities/{other.facility_id}/staff", {
        "email": "x@example.org", "legal_name": "X", "role": "admin", "password": "p" * 12})).problem(403)
    listed = (await mine.officer.get("/v1/facilities")).ok()
    assert [f["id"] for f in listed] == [mine.facility_id]
    # ids of another facility's rows cannot be mixed into this facility's paths
    (await mine.admin.patch(f"/v1/facilities/{mine.facility_id}/housing-units/{other.unit_id}",
                            {"kiosk_count": 9})).problem(404)


async def test_kiosk_secret_is_shown_once_and_signs_the_kiosk_in(api: Api) -> None:
    w = await build_facility(api)
    kiosks = (await w.admin.get(f"/v1/facilities/{w.facility_id}/kiosks")).ok()
    assert kiosks[0]["secret"] is None
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": w.kiosk_id, "secret": "wrong"})).problem(401)
    (await w.admin.patch(f"/v1/facilities/{w.facility_id}/kiosks/{w.kiosk_id}", {"active": False})).ok()
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": w.kiosk_id, "secret": w.kiosk_secret})).problem(401)


async def test_staff_accounts_belong_to_one_facility(api: Api) -> None:
    w = await build_facility(api)
    officer = (await w.admin.post(f"/v1/facilities/{w.facility_id}/staff", {
        "email": "New.Officer@example.org", "legal_name": "New Officer", "role": "officer",
        "password": "p" * 12})).ok(201)
    assert officer["facility_id"] == w.facility_id and officer["email"] == "new.officer@example.org"
    (await w.officer.post(f"/v1/facilities/{w.facility_id}/staff", {
        "email": "y@example.org", "legal_name": "Y", "role": "admin", "password": "p" * 12})).problem(403)
    login = (await api.anonymous.post("/v1/auth/login", {"email": "new.officer@example.org",
                                                         "password": "p" * 12})).ok()
    assert login["role"] == Role.OFFICER.value
