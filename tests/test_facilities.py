"""Facility configuration: rules A1-A8, M7 fees, M8 billing mode and caps, kiosks, staff, V3 isolation.

These tests check that configuration is validated and stored; the booking tests check that it is
enforced.
"""

from __future__ import annotations

import asyncio

from control_api.auth import Role
from control_api.domain.facility_rules import WindowSpec, booking_window_problem, timezone_problem, window_problems
from tests.support import PASSWORD, Api
from tests.support_facility import build_facility


def test_a1_timezone_problem_accepts_only_iana_zones() -> None:
    for good in ("America/Chicago", "Europe/Paris", "UTC", "America/Indiana/Knox", "Etc/GMT+5"):
        assert timezone_problem(good) is None, good
    for bad in ("UTC-5", "EST", "CST6CDT", "America/Indiana", "America/", "right/UTC", "posix/America/Chicago",
                "../etc/passwd", "America/Chicago ", "Mars/Olympus", "localtime"):
        assert timezone_problem(bad) is not None, bad


async def test_a1_timezone_must_be_an_iana_zone(api: Api) -> None:
    op = await api.operator()
    r = await op.post("/v1/facilities", {"name": "X", "timezone": "UTC-5"})
    assert "A1" in r.problem(422, "validation-error")["detail"]
    for bad in ("Mars/Olympus", "America/Indiana", "right/UTC"):  # a folder of zones, not a zone
        (await op.post("/v1/facilities", {"name": "X", "timezone": bad})).problem(422, "validation-error")
    created = (await op.post("/v1/facilities", {"name": "X", "timezone": "America/New_York"})).ok(201)
    assert created["timezone"] == "America/New_York"
    path = f"/v1/facilities/{created['id']}"
    (await op.patch(path, {"timezone": "GMT+1"})).problem(422, "validation-error")
    assert (await op.patch(path, {"timezone": "America/Denver"})).ok()["timezone"] == "America/Denver"
    assert (await op.get(path)).ok()["timezone"] == "America/Denver"


def test_a2_window_problems_find_overlaps_and_empty_spans() -> None:
    assert window_problems([WindowSpec(0, 480, 660), WindowSpec(0, 660, 720), WindowSpec(1, 480, 660)]) == []
    problems = window_problems([WindowSpec(0, 480, 660), WindowSpec(0, 630, 720), WindowSpec(2, 600, 600)])
    assert problems == ["Wednesday 10:00-10:00: start must be before end",
                        "Monday: 08:00-11:00 overlaps 10:30-12:00"]


async def test_a2_window_overlap_is_refused_and_nothing_changes(api: Api) -> None:
    w = await build_facility(api)
    path = w.path(f"/housing-units/{w.unit_id}/windows")
    r = await w.admin.put(path, {"windows": [{"weekday": 0, "start": "08:00", "end": "11:00"},
                                             {"weekday": 0, "start": "10:30", "end": "12:00"}]})
    body = r.problem(422, "invalid-windows")
    assert "overlaps" in body["detail"] and "A2" in body["detail"]
    r = await w.admin.put(path, {"windows": [{"weekday": 0, "start": "11:00", "end": "08:00"}]})
    assert "start must be before end" in r.problem(422, "invalid-windows")["detail"]
    assert len((await w.admin.get(path)).ok()) == 7  # still the all-day windows from setup
    # touching windows are not overlapping; the list is replaced as a whole
    saved = (await w.admin.put(path, {"windows": [{"weekday": 0, "start": "13:00", "end": "16:00"},
                                                  {"weekday": 0, "start": "08:00", "end": "13:00"}]})).ok()
    assert saved == [{"weekday": 0, "weekday_name": "Monday", "start": "08:00", "end": "13:00"},
                     {"weekday": 0, "weekday_name": "Monday", "start": "13:00", "end": "16:00"}]
    assert (await w.admin.get(path)).ok() == saved


async def test_a2_window_times_and_weekdays_are_validated(api: Api) -> None:
    w = await build_facility(api)
    path = w.path(f"/housing-units/{w.unit_id}/windows")
    for bad in ({"weekday": 7, "start": "08:00", "end": "09:00"}, {"weekday": -1, "start": "08:00", "end": "09:00"},
                {"weekday": 0, "start": "8:00", "end": "09:00"}, {"weekday": 0, "start": "24:00", "end": "24:00"},
                {"weekday": 0, "start": "00:00", "end": "24:30"}, {"weekday": 0, "start": "08:60", "end": "09:00"},
                {"weekday": 0, "start": "08:00"}):
        (await w.admin.put(path, {"windows": [bad]})).problem(422, "validation-error")
    whole_day = (await w.admin.put(path, {"windows": [{"weekday": 6, "start": "00:00", "end": "24:00"}]})).ok()
    assert whole_day == [{"weekday": 6, "weekday_name": "Sunday", "start": "00:00", "end": "24:00"}]
    assert (await w.admin.put(path, {"windows": []})).ok() == []  # a unit may have no visiting hours


async def test_a2_windows_are_per_housing_unit(api: Api) -> None:
    w = await build_facility(api, units=("A", "B"))
    a, b = w.unit_ids["A"], w.unit_ids["B"]
    (await w.admin.put(w.path(f"/housing-units/{a}/windows"),
                       {"windows": [{"weekday": 1, "start": "09:00", "end": "10:00"}]})).ok()
    assert len((await w.admin.get(w.path(f"/housing-units/{b}/windows"))).ok()) == 7
    # visitors see visiting hours too (they need them to book)
    visitor = await api.sign_up()
    assert len((await visitor.get(w.path(f"/housing-units/{a}/windows"))).ok()) == 1
    (await w.officer.put(w.path(f"/housing-units/{a}/windows"), {"windows": []})).problem(403)


async def test_a2_closures_are_facility_or_unit_wide(api: Api) -> None:
    op = await api.operator()
    w = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    path = w.path("/closures")
    (await w.admin.post(path, {"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z",
                               "reason": "x"})).problem(422)
    (await w.admin.post(path, {"starts_at": "2030-01-01T00:00:00", "ends_at": "2030-01-02T00:00:00Z",
                               "reason": "naive times are ambiguous"})).problem(422)
    (await w.admin.post(path, {"starts_at": "9999-12-31T20:00:00-05:00", "ends_at": "9999-12-31T23:00:00-05:00",
                               "reason": "out of range"})).problem(422)
    (await w.admin.post(path, {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z",
                               "reason": "another facility's unit", "housing_unit_id": other.unit_id})).problem(404)
    whole = (await w.admin.post(path, {"starts_at": "2030-12-25T00:00:00-06:00",
                                       "ends_at": "2030-12-26T00:00:00-06:00", "reason": "Christmas"})).ok(201)
    assert whole["housing_unit_id"] is None and whole["starts_at"].startswith("2030-12-25T06:00:00")
    c = (await w.admin.post(path, {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z",
                                   "reason": "lockdown", "housing_unit_id": w.unit_id})).ok(201)
    assert c["housing_unit_id"] == w.unit_id
    assert [x["id"] for x in (await w.admin.get(path)).ok()] == [c["id"], whole["id"]]
    (await other.admin.delete(f"{other.path('/closures')}/{c['id']}")).problem(404)
    (await other.admin.delete(f"{path}/{c['id']}")).problem(403)
    (await w.admin.delete(f"{path}/{c['id']}")).ok()
    (await w.admin.delete(f"{path}/{c['id']}")).problem(404)
    assert [x["id"] for x in (await w.admin.get(path)).ok()] == [whole["id"]]


async def test_a3_session_lengths_and_prices_per_type(api: Api) -> None:
    w = await build_facility(api)
    path = w.path("/session-options")
    options = (await w.admin.get(path)).ok()
    assert {(o["visit_type"], o["length_minutes"], o["price_cents"]) for o in options} == {
        ("social", 30, 750), ("social", 20, 500), ("privileged", 30, 0)}
    (await w.admin.put(path, {"options": [{"visit_type": "social", "length_minutes": 30, "price_cents": 1},
                                          {"visit_type": "social", "length_minutes": 30, "price_cents": 2}]})
     ).problem(422, "duplicate-option")
    for bad in ({"visit_type": "social", "length_minutes": 30, "price_cents": -1},
                {"visit_type": "social", "length_minutes": 4, "price_cents": 100},
                {"visit_type": "social", "length_minutes": 241, "price_cents": 100},
                {"visit_type": "conjugal", "length_minutes": 30, "price_cents": 100},
                {"visit_type": "social", "length_minutes": 30, "per_minute_cents": -1}):
        (await w.admin.put(path, {"options": [bad]})).problem(422, "validation-error")
    assert len((await w.admin.get(path)).ok()) == 3  # refused lists changed nothing
    # the list is replaced as a whole; the same length may be priced differently per visit type
    replaced = (await w.admin.put(path, {"options": [
        {"visit_type": "social", "length_minutes": 45, "price_cents": 999},
        {"visit_type": "privileged", "length_minutes": 45, "price_cents": 0}]})).ok()
    assert [(o["visit_type"], o["length_minutes"], o["price_cents"]) for o in replaced] == [
        ("privileged", 45, 0), ("social", 45, 999)]
    visitor = await api.sign_up()
    assert (await visitor.get(path)).ok() == replaced  # prices are public before booking (B6)


async def test_a4_kiosk_count_is_configured_per_unit(api: Api) -> None:
    w = await build_facility(api, kiosk_count=3, units=("A", "B"))
    path = w.path("/housing-units")
    assert [(u["name"], u["kiosk_count"]) for u in (await w.admin.get(path)).ok()] == [("A", 3), ("B", 3)]
    unit_a = f"{path}/{w.unit_ids['A']}"
    (await w.admin.patch(unit_a, {"kiosk_count": -1})).problem(422)
    (await w.admin.patch(unit_a, {})).problem(400, "empty-update")
    (await w.admin.patch(unit_a, {"name": "B"})).problem(409, "unit-exists")
    (await w.admin.post(path, {"name": "A", "kiosk_count": 1})).problem(409, "unit-exists")
    (await w.admin.post(path, {"name": "C"})).problem(422)  # the kiosk count is required
    assert (await w.admin.patch(unit_a, {"kiosk_count": 0})).ok()["kiosk_count"] == 0  # no visits at all
    assert (await w.admin.patch(unit_a, {"kiosk_count": 2, "name": "A-North"})).ok() == {
        "id": w.unit_ids["A"], "facility_id": w.facility_id, "name": "A-North", "kiosk_count": 2}
    (await w.officer.patch(unit_a, {"kiosk_count": 5})).problem(403)


async def test_a5_booking_horizon_and_lead_time_are_stored_and_checked_together(api: Api) -> None:
    assert booking_window_problem(booking_horizon_days=1, min_lead_minutes=1439) is None
    assert "A5" in (booking_window_problem(booking_horizon_days=1, min_lead_minutes=1440) or "")
    w = await build_facility(api)
    path = w.path()
    for bad in ({"booking_horizon_days": 0}, {"booking_horizon_days": 366}, {"min_lead_minutes": -1}):
        (await w.admin.patch(path, bad)).problem(422, "validation-error")
    r = await w.admin.patch(path, {"booking_horizon_days": 2, "min_lead_minutes": 2 * 24 * 60})
    assert "A5" in r.problem(422, "invalid-booking-window")["detail"]
    (await w.admin.patch(path, {"booking_horizon_days": 2})).ok()
    (await w.admin.patch(path, {"min_lead_minutes": 3000})).problem(422, "invalid-booking-window")
    (await w.operator.post("/v1/facilities", {"name": "Y", "timezone": "UTC", "booking_horizon_days": 1,
                                              "min_lead_minutes": 1440})).problem(422, "invalid-booking-window")
    updated = (await w.admin.patch(path, {"booking_horizon_days": 21, "min_lead_minutes": 120})).ok()
    assert (updated["booking_horizon_days"], updated["min_lead_minutes"]) == (21, 120)
    stored = (await w.admin.get(path)).ok()
    assert (stored["booking_horizon_days"], stored["min_lead_minutes"]) == (21, 120)


async def test_a6_cancellation_notice_is_stored_and_validated(api: Api) -> None:
    w = await build_facility(api)
    assert w.facility["cancellation_notice_hours"] == 24  # default
    (await w.admin.patch(w.path(), {"cancellation_notice_hours": -1})).problem(422, "validation-error")
    (await w.admin.patch(w.path(), {"cancellation_notice_hours": "soon"})).problem(422, "validation-error")
    assert (await w.admin.patch(w.path(), {"cancellation_notice_hours": 48})).ok()["cancellation_notice_hours"] == 48
    visitor = await api.sign_up()  # visitors read the notice period before they book
    assert (await visitor.get(w.path())).ok()["cancellation_notice_hours"] == 48


async def test_a7_weekly_limit_and_review_mode_are_stored_and_validated(api: Api) -> None:
    w = await build_facility(api, review_mode="manual", weekly_visit_limit=3)
    assert (w.facility["review_mode"], w.facility["weekly_visit_limit"]) == ("manual", 3)
    for bad in ({"weekly_visit_limit": 0}, {"weekly_visit_limit": 101}, {"review_mode": "sometimes"}):
        (await w.admin.patch(w.path(), bad)).problem(422, "validation-error")
    updated = (await w.admin.patch(w.path(), {"weekly_visit_limit": 2, "review_mode": "auto"})).ok()
    assert (updated["weekly_visit_limit"], updated["review_mode"]) == (2, "auto")


async def test_a8_retention_days_is_stored_and_validated(api: Api) -> None:
    w = await build_facility(api)
    assert w.facility["retention_days"] == 365  # default
    for bad in (0, -5, 3651):
        (await w.admin.patch(w.path(), {"retention_days": bad})).problem(422, "validation-error")
    assert (await w.admin.patch(w.path(), {"retention_days": 90})).ok()["retention_days"] == 90
    assert (await w.operator.get(w.path())).ok()["retention_days"] == 90


async def test_facility_update_refuses_unknown_and_empty_changes(api: Api) -> None:
    w = await build_facility(api)
    (await w.admin.patch(w.path(), {})).problem(400, "empty-update")
    (await w.admin.patch(w.path(), {"unknown": 1})).problem(422, "validation-error")
    (await w.officer.patch(w.path(), {"name": "renamed"})).problem(403)
    (await w.admin.post("/v1/facilities", {"name": "Mine", "timezone": "UTC"})).problem(403)
    assert (await w.admin.patch(w.path(), {"name": "Renamed"})).ok()["name"] == "Renamed"


async def test_m8_per_minute_rate_above_cap_is_refused_with_cap_in_message(api: Api) -> None:
    w = await build_facility(api, size_tier="jail_100_349", billing_mode="per_minute")
    path = w.path("/session-options")
    r = await w.admin.put(path, {"options": [{"visit_type": "social", "length_minutes": 30, "per_minute_cents": 22}]})
    body = r.problem(422, "rate-above-cap")
    assert "$0.21/min" in body["detail"] and "$0.22/min" in body["detail"] and "M8" in body["detail"]
    assert {o["per_minute_cents"] for o in (await w.admin.get(path)).ok()} == {20, 0}  # nothing changed
    at_cap = (await w.admin.put(path, {"options": [
        {"visit_type": "social", "length_minutes": 30, "per_minute_cents": 21}]})).ok()
    assert at_cap[0]["per_minute_cents"] == 21


async def test_m8_switching_to_per_minute_rechecks_existing_prices(api: Api) -> None:
    w = await build_facility(api, size_tier="jail_1000_plus", options=[
        {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 25}])
    # per-visit billing: the per-minute column is not charged, so it is not capped
    assert w.facility["billing_mode"] == "per_visit"
    r = await w.admin.patch(w.path(), {"billing_mode": "per_minute"})
    assert "$0.19/min" in r.problem(422, "rate-above-cap")["detail"]
    assert (await w.admin.get(w.path())).ok()["billing_mode"] == "per_visit"
    (await w.admin.put(w.path("/session-options"), {"options": [
        {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 19}]})).ok()
    assert (await w.admin.patch(w.path(), {"billing_mode": "per_minute"})).ok()["billing_mode"] == "per_minute"


async def test_m8_only_the_operator_changes_the_size_tier_and_it_rechecks_caps(api: Api) -> None:
    w = await build_facility(api, size_tier="jail_100_349", billing_mode="per_minute")  # options at 20 cents/min
    r = await w.admin.patch(w.path(), {"size_tier": "jail_under_50"})
    assert "M8" in r.problem(403)["detail"]
    assert (await w.admin.patch(w.path(), {"size_tier": "jail_100_349", "name": "Same tier"})).ok()["name"] == (
        "Same tier")
    r = await w.operator.patch(w.path(), {"size_tier": "jail_1000_plus"})  # cap 19 < 20: refused
    assert "$0.19/min" in r.problem(422, "rate-above-cap")["detail"]
    assert (await w.admin.get(w.path())).ok()["size_tier"] == "jail_100_349"
    (await w.operator.patch(w.path(), {"size_tier": "county"})).problem(422, "validation-error")
    assert (await w.operator.patch(w.path(), {"size_tier": "prison"})).ok()["size_tier"] == "prison"


async def test_m7_fees_default_to_none_and_only_the_operator_sets_them(api: Api) -> None:
    w = await build_facility(api)
    path = w.path("/fees")
    assert (await w.admin.get(path)).ok() == []
    (await w.admin.put(path, {"fees": [{"name": "Convenience", "kind": "fee", "amount_cents": 100}]})).problem(403)
    for bad in ({"name": "T", "kind": "tax", "rate_basis_points": 10_001}, {"name": "F", "kind": "fee",
                                                                            "amount_cents": -1},
                {"name": "F", "kind": "surcharge"}):
        (await w.operator.put(path, {"fees": [bad]})).problem(422, "validation-error")
    fees = (await w.operator.put(path, {"fees": [{"name": "Sales tax", "kind": "tax", "rate_basis_points": 625}]})).ok()
    assert fees == [{"name": "Sales tax", "kind": "tax", "amount_cents": 0, "rate_basis_points": 625}]
    visitor = await api.sign_up()
    assert (await visitor.get(path)).ok() == fees  # shown before booking (B6)
    assert (await w.operator.put(path, {"fees": []})).ok() == []


async def test_v3_staff_never_see_or_change_another_facility(api: Api) -> None:
    op = await api.operator()
    mine = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    for path in ("", "/residents", "/kiosks", "/staff", "/housing-units", "/closures", "/session-options",
                 "/fees", "/access-requests", "/bar-verifications", f"/housing-units/{other.unit_id}/windows"):
        for caller in (mine.admin, mine.officer, mine.investigator, mine.kiosk):
            r = await caller.get(other.path(path))
            assert r.status == 403, (path, r.status, r.body)
    (await mine.admin.patch(other.path(), {"name": "hijacked"})).problem(403)
    (await mine.admin.put(other.path("/session-options"), {"options": []})).problem(403)
    (await mine.admin.post(other.path("/staff"), {
        "email": "x@example.org", "legal_name": "X", "role": "admin", "password": "p" * 12})).problem(403)
    assert (await other.admin.get(other.path())).ok()["name"] == other.facility["name"]
    for caller in (mine.admin, mine.officer, mine.kiosk):
        assert [f["id"] for f in (await caller.get("/v1/facilities")).ok()] == [mine.facility_id]
    assert {f["id"] for f in (await op.get("/v1/facilities")).ok()} == {mine.facility_id, other.facility_id}
    # ids of another facility's rows cannot be mixed into this facility's paths
    (await mine.admin.patch(mine.path(f"/housing-units/{other.unit_id}"), {"kiosk_count": 9})).problem(404)
    (await mine.admin.get(mine.path(f"/housing-units/{other.unit_id}/windows"))).problem(404)
    (await mine.admin.patch(mine.path(f"/kiosks/{other.kiosk_id}"), {"active": False})).problem(404)
    (await mine.admin.post(mine.path("/kiosks"), {"housing_unit_id": other.unit_id, "name": "sneaky"})).problem(404)
    assert (await other.admin.get(other.path("/housing-units"))).ok()[0]["kiosk_count"] == 1


async def test_visitors_pick_a_facility_but_never_see_staff_data(api: Api) -> None:
    op = await api.operator()
    one = await build_facility(api, operator=op)
    two = await build_facility(api, operator=op)
    visitor = await api.sign_up()
    assert {f["id"] for f in (await visitor.get("/v1/facilities")).ok()} == {one.facility_id, two.facility_id}
    assert (await visitor.get(one.path())).ok()["timezone"] == "America/Chicago"
    for path in ("/kiosks", "/staff", "/residents", "/access-requests", "/bar-verifications"):
        (await visitor.get(one.path(path))).problem(403)
    (await visitor.get("/v1/facilities/00000000-0000-4000-8000-000000000000")).problem(404)
    (await api.anonymous.get("/v1/facilities")).problem(401)


async def test_kiosk_secret_is_shown_once_and_signs_the_kiosk_in(api: Api) -> None:
    w = await build_facility(api)
    path = w.path("/kiosks")
    created = (await w.admin.post(path, {"housing_unit_id": w.unit_id, "name": "Dayroom 2"})).ok(201)
    secret = created["secret"]
    assert isinstance(secret, str) and len(secret) >= 24
    listed = (await w.admin.get(path)).ok()
    assert {k["id"] for k in listed} == {w.kiosk_id, created["id"]}
    assert all(k["secret"] is None for k in listed) and secret not in str(listed)
    login = (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": created["id"], "secret": secret})).ok()
    assert login["role"] == "kiosk"
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": created["id"], "secret": "wrong"})).problem(401)
    disabled = (await w.admin.patch(f"{path}/{created['id']}", {"active": False})).ok()
    assert disabled["active"] is False and disabled["secret"] is None
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": created["id"], "secret": secret})).problem(401)
    (await w.admin.patch(f"{path}/{created['id']}", {"active": True})).ok()
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": created["id"], "secret": secret})).ok()
    (await w.officer.post(path, {"housing_unit_id": w.unit_id, "name": "x"})).problem(403)
    assert all(k["secret"] is None for k in (await w.officer.get(path)).ok())


async def test_v3_staff_accounts_belong_to_one_facility(api: Api) -> None:
    op = await api.operator()
    w = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    officer = (await w.admin.post(w.path("/staff"), {
        "email": "New.Officer@example.org", "legal_name": "New Officer", "role": "officer",
        "password": "p" * 12})).ok(201)
    assert officer["facility_id"] == w.facility_id and officer["email"] == "new.officer@example.org"
    (await w.admin.post(w.path("/staff"), {"email": "new.officer@example.org", "legal_name": "Again",
                                           "role": "officer", "password": "p" * 12})).problem(409, "email-taken")
    (await w.admin.post(w.path("/staff"), {"email": "op@example.org", "legal_name": "Op", "role": "operator",
                                           "password": "p" * 12})).problem(422, "validation-error")
    (await w.officer.post(w.path("/staff"), {
        "email": "y@example.org", "legal_name": "Y", "role": "admin", "password": "p" * 12})).problem(403)
    admin2 = (await op.post(other.path("/staff"), {"email": "admin2@example.org", "legal_name": "Admin Two",
                                                   "role": "admin", "password": "p" * 12})).ok(201)
    assert admin2["facility_id"] == other.facility_id
    login = (await api.anonymous.post("/v1/auth/login", {"email": "new.officer@example.org",
                                                         "password": "p" * 12})).ok()
    assert login["role"] == Role.OFFICER.value
    staff = (await w.admin.get(w.path("/staff"))).ok()
    assert "new.officer@example.org" in {s["email"] for s in staff}
    assert {s["facility_id"] for s in staff} == {w.facility_id}
    assert "admin2@example.org" not in {s["email"] for s in staff}
    assert PASSWORD not in str(staff) and all("password" not in s and "password_hash" not in s for s in staff)


async def test_m8_cap_holds_when_mode_and_prices_change_at_once(api: Api) -> None:
    """Switching to per-minute billing and raising a per-minute price in two simultaneous requests:
    each passes alone, together they would break the cap, so one of them must be refused."""
    w = await build_facility(api, size_tier="prison")  # cap 25 cents/min; options carry 20
    for _ in range(4):
        (await w.operator.patch(w.path(), {"billing_mode": "per_visit"})).ok()
        (await w.admin.put(w.path("/session-options"), {"options": [
            {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 20}]})).ok()
        switch, raise_price = await asyncio.gather(
            w.admin.patch(w.path(), {"billing_mode": "per_minute"}),
            w.admin.put(w.path("/session-options"), {"options": [
                {"visit_type": "social", "length_minutes": 30, "price_cents": 750, "per_minute_cents": 30}]}))
        assert sorted((switch.status, raise_price.status)) == [200, 422], (switch.body, raise_price.body)
        facility = (await w.admin.get(w.path())).ok()
        rates = [o["per_minute_cents"] for o in (await w.admin.get(w.path("/session-options"))).ok()]
        assert facility["billing_mode"] == "per_visit" or max(rates) <= 25


async def test_a2_simultaneous_window_replacements_never_merge(api: Api) -> None:
    w = await build_facility(api)
    path = w.path(f"/housing-units/{w.unit_id}/windows")
    for _ in range(4):
        lists = [[{"weekday": 0, "start": f"{8 + i}:00".zfill(5), "end": f"{9 + i}:30".zfill(5)}] for i in range(4)]
        results = await asyncio.gather(*(w.admin.put(path, {"windows": x}) for x in lists))
        assert all(r.status in (200, 409) for r in results)
        stored = (await w.admin.get(path)).ok()
        assert len(stored) == 1, stored  # one whole list won; overlapping windows were never merged


async def test_rotating_a_kiosk_secret_ends_the_old_one_and_its_sessions(api: Api) -> None:
    """Issue 13 (the admin console): rotate a lost or copied kiosk secret. The new secret is shown
    once; the old one and every session opened with it stop working; other kiosks are untouched."""
    w = await build_facility(api, units=("A", "B"))
    rotate = w.path(f"/kiosks/{w.kiosk_id}/secret")
    (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    rotated = (await w.admin.post(rotate)).ok()
    assert rotated["id"] == w.kiosk_id and rotated["active"] is True
    new_secret = rotated["secret"]
    assert isinstance(new_secret, str) and len(new_secret) >= 24 and new_secret != w.kiosk_secret
    assert all(k["secret"] is None for k in (await w.admin.get(w.path("/kiosks"))).ok())
    (await w.kiosk.get("/v1/kiosk/notifications")).problem(401)  # its session ended
    (await w.kiosks["B"].get("/v1/kiosk/notifications")).ok()  # the other unit's kiosk is untouched
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": w.kiosk_id, "secret": w.kiosk_secret})).problem(401)
    login = (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": w.kiosk_id, "secret": new_secret})).ok()
    assert login["role"] == "kiosk"
    (await w.operator.post(rotate)).ok()  # the operator may too
    for caller in (w.officer, w.investigator, w.kiosks["B"], await api.sign_up()):
        (await caller.post(rotate)).problem(403)
    (await api.anonymous.post(rotate)).problem(401)
    other = await build_facility(api, operator=w.operator)
    (await other.admin.post(rotate)).problem(403)
    (await other.admin.post(other.path(f"/kiosks/{w.kiosk_id}/secret"))).problem(404)
