"""The resident roster and its CSV import."""

from __future__ import annotations

from tests.support import Api
from tests.support_facility import build_facility


async def test_csv_import_is_all_or_nothing_with_every_bad_row_listed(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}/residents/import"
    csv_bad = "booking_number,full_name,housing_unit\nR-2,Two,A\nR 3,Three,A\nR-4,Four,Nowhere\nR-2,Again,A\n"
    r = await w.admin.post(path, data=csv_bad.encode(), headers={"Content-Type": "text/csv"})
    body = r.problem(422, "bad-csv-rows")
    assert [p["line"] for p in body["problems"]] == [3, 4, 5]
    residents = (await w.admin.get(f"/v1/facilities/{w.facility_id}/residents")).ok()
    assert [x["booking_number"] for x in residents] == ["R-1"]  # nothing written
    good = "booking_number,full_name,housing_unit\nR-1,Resident Renamed,A\nR-2,Two,A\n"
    result = (await w.admin.post(path, data=good.encode(), headers={"Content-Type": "text/csv"})).ok()
    assert result == {"created": 1, "updated": 1}
    names = {x["booking_number"]: x["full_name"] for x in
             (await w.admin.get(f"/v1/facilities/{w.facility_id}/residents")).ok()}
    assert names == {"R-1": "Resident Renamed", "R-2": "Two"}


async def test_csv_import_rejects_missing_columns_and_binary(api: Api) -> None:
    w = await build_facility(api)
    path = f"/v1/facilities/{w.facility_id}/residents/import"
    r = await w.admin.post(path, data=b"name\nx\n", headers={"Content-Type": "text/csv"})
    r.problem(422, "bad-csv-header")
    r = await w.admin.post(path, data=b"\xff\xfe\x00bad", headers={"Content-Type": "text/csv"})
    r.problem(400, "bad-encoding")
    r = await w.admin.post(path, data=b"a,b", headers={"Content-Type": "application/json"})
    r.problem(415)


async def test_residents_search_move_and_duplicate_booking_numbers(api: Api) -> None:
    w = await build_facility(api)
    base = f"/v1/facilities/{w.facility_id}/residents"
    (await w.admin.post(base, {"booking_number": "R-1", "full_name": "Dup", "housing_unit_id": w.unit_id})).problem(
        409, "resident-exists")
    unit_b = (await w.admin.post(f"/v1/facilities/{w.facility_id}/housing-units",
                                 {"name": "B", "kiosk_count": 1})).ok(201)
    moved = (await w.admin.patch(f"{base}/{w.resident_id}", {"housing_unit_id": unit_b["id"]})).ok()
    assert moved["housing_unit_id"] == unit_b["id"]
    found = (await w.officer.get(f"{base}?q=one")).ok()
    assert [x["id"] for x in found] == [w.resident_id]
    (await w.officer.post(base, {"booking_number": "R-9", "full_name": "X", "housing_unit_id": w.unit_id})).problem(403)


async def test_v1_resident_lookup_only_for_approved_visitors(api: Api) -> None:
    w = await build_facility(api)
    stranger = await api.sign_up()
    path = f"/v1/facilities/{w.facility_id}/residents/lookup?booking_number=R-1"
    (await stranger.get(path)).problem(403)
    visitor = await w.approved_visitor(api)
    found = (await visitor.get(path)).ok()
    assert found == {"id": w.resident_id, "full_name": "Resident One", "booking_number": "R-1",
                     "housing_unit_id": w.unit_id}
