"""The resident roster, its all-or-nothing CSV import, and the visitors' lookup (V1, V3)."""

from __future__ import annotations

from typing import Any

from tests.support import Api, As, Response
from tests.support_facility import FacilityWorld, build_facility

HEADER = "booking_number,full_name,housing_unit\n"


async def _import(w: FacilityWorld, caller: As, text: str | bytes) -> Response:
    data = text.encode() if isinstance(text, str) else text
    return await caller.post(w.path("/residents/import"), data=data, headers={"Content-Type": "text/csv"})


async def _roster(w: FacilityWorld) -> dict[str, Any]:
    return {x["booking_number"]: x for x in (await w.admin.get(w.path("/residents"))).ok()}


async def test_csv_import_is_all_or_nothing_with_every_bad_row_listed(api: Api) -> None:
    w = await build_facility(api)
    bad = HEADER + "R-2,Two,A\nR 3,Three,A\nR-4,Four,Nowhere\nR-2,Again,A\nR-5,,A\nR-6,Six,A\n"
    body = (await _import(w, w.admin, bad)).problem(422, "bad-csv-rows")
    assert [p["line"] for p in body["problems"]] == [3, 4, 5, 6]
    assert "nothing was imported" in body["detail"]
    assert "unknown housing unit 'Nowhere'" in body["problems"][1]["errors"]
    assert "booking number R-2 repeats line 2" in body["problems"][2]["errors"]
    assert list(await _roster(w)) == ["R-1"]  # nothing written, not even the good rows
    good = HEADER + "R-1,Resident Renamed,A\nR-2,Two,A\n"
    assert (await _import(w, w.admin, good)).ok() == {"created": 1, "updated": 1}
    roster = await _roster(w)
    assert {k: v["full_name"] for k, v in roster.items()} == {"R-1": "Resident Renamed", "R-2": "Two"}
    assert roster["R-1"]["id"] == w.resident_id  # updated in place, same id


async def test_csv_import_upserts_moves_and_reactivates(api: Api) -> None:
    w = await build_facility(api, units=("A", "B"))
    (await w.admin.patch(w.path(f"/residents/{w.resident_id}"), {"active": False})).ok()
    # a BOM, CRLF line endings, quoted names with commas, an extra column, spaces around values
    text = "\ufeffbooking_number, full_name ,housing_unit,notes\r\n R-1 ,\"Doe, Jane\", B ,x\r\nR-7,Seven,A,\r\n"
    assert (await _import(w, w.admin, text)).ok() == {"created": 1, "updated": 1}
    roster = await _roster(w)
    assert roster["R-1"]["full_name"] == "Doe, Jane" and roster["R-1"]["active"] is True
    assert roster["R-1"]["housing_unit_id"] == w.unit_ids["B"]
    assert roster["R-7"]["housing_unit_id"] == w.unit_ids["A"]


async def test_csv_import_rejects_bad_files(api: Api) -> None:
    w = await build_facility(api)
    (await _import(w, w.admin, "name\nx\n")).problem(422, "bad-csv-header")
    (await _import(w, w.admin, HEADER)).problem(422, "bad-csv")
    (await _import(w, w.admin, b"\xff\xfe\x00bad")).problem(400, "bad-encoding")
    (await _import(w, w.admin, HEADER + "R-2,Na\x00me,A\n")).problem(400, "bad-encoding")
    r = await w.admin.post(w.path("/residents/import"), data=b"a,b", headers={"Content-Type": "application/json"})
    r.problem(415)
    assert list(await _roster(w)) == ["R-1"]


async def test_csv_import_is_for_the_facility_admin_only(api: Api) -> None:
    op = await api.operator()
    w = await build_facility(api, operator=op)
    other = await build_facility(api, operator=op)
    (await _import(w, w.officer, HEADER + "R-2,Two,A\n")).problem(403)
    (await _import(w, other.admin, HEADER + "R-2,Two,A\n")).problem(403)  # V3
    assert (await _import(w, op, HEADER + "R-2,Two,A\n")).ok() == {"created": 1, "updated": 0}
    # the same booking number in another facility is another person
    assert (await _import(other, other.admin, HEADER + "R-2,Someone Else,A\n")).ok() == {"created": 1, "updated": 0}
    assert (await _roster(w))["R-2"]["full_name"] == "Two"


async def test_residents_search_move_and_duplicate_booking_numbers(api: Api) -> None:
    op = await api.operator()
    w = await build_facility(api, operator=op, units=("A", "B"), residents=[
        ("R-1", "Resident One", "A"), ("R-2", "Anna 100%", "B"), ("R-3", "Anna_Smith", "A")])
    other = await build_facility(api, operator=op)
    base = w.path("/residents")
    (await w.admin.post(base, {"booking_number": "R-1", "full_name": "Dup", "housing_unit_id": w.unit_id})).problem(
        409, "resident-exists")
    (await w.admin.post(base, {"booking_number": "R 9", "full_name": "X", "housing_unit_id": w.unit_id})).problem(422)
    (await w.admin.post(base, {"booking_number": "R-9", "full_name": "X",
                               "housing_unit_id": other.unit_id})).problem(404)
    moved = (await w.admin.patch(f"{base}/{w.resident_id}", {"housing_unit_id": w.unit_ids["B"]})).ok()
    assert moved["housing_unit_id"] == w.unit_ids["B"]
    (await w.admin.patch(f"{base}/{w.resident_id}", {"housing_unit_id": other.unit_id})).problem(404)
    (await w.admin.patch(f"{base}/{w.resident_id}", {})).problem(400, "empty-update")
    (await w.admin.patch(f"{base}/{other.resident_id}", {"active": False})).problem(404)
    assert [x["id"] for x in (await w.officer.get(f"{base}?q=one")).ok()] == [w.resident_id]
    assert [x["booking_number"] for x in (await w.investigator.get(f"{base}?q=%25")).ok()] == ["R-2"]
    assert [x["booking_number"] for x in (await w.investigator.get(f"{base}?q=a_")).ok()] == ["R-3"]
    by_unit = (await w.admin.get(f"{base}?housing_unit_id={w.unit_ids['B']}")).ok()
    assert sorted(x["booking_number"] for x in by_unit) == ["R-1", "R-2"]
    (await w.officer.post(base, {"booking_number": "R-9", "full_name": "X", "housing_unit_id": w.unit_id})).problem(403)
    (await w.officer.patch(f"{base}/{w.resident_id}", {"active": False})).problem(403)


async def test_v1_resident_lookup_only_for_approved_visitors(api: Api) -> None:
    w = await build_facility(api, residents=[("R-1", "Resident One", "A"), ("R-2", "Gone", "A")])
    path = w.path("/residents/lookup?booking_number=R-1")
    stranger = await api.sign_up()
    (await stranger.get(path)).problem(403)
    visitor = await w.approved_visitor(api)
    assert (await visitor.get(path)).ok() == {"id": w.resident_id, "full_name": "Resident One",
                                              "booking_number": "R-1", "housing_unit_id": w.unit_id}
    (await visitor.get(w.path("/residents/lookup?booking_number=R-404"))).problem(404)
    (await w.admin.patch(w.path(f"/residents/{w.resident_ids['R-2']}"), {"active": False})).ok()
    (await visitor.get(w.path("/residents/lookup?booking_number=R-2"))).problem(404)
    (await visitor.get(w.path("/residents/lookup"))).problem(422)
    (await visitor.get(w.path("/residents"))).problem(403)  # no browsing the roster
    (await w.admin.get(path)).problem(403)  # staff use the roster itself


async def test_v1_lookup_is_per_facility(api: Api) -> None:
    op = await api.operator()
    here = await build_facility(api, operator=op)
    there = await build_facility(api, operator=op)
    visitor = await here.approved_visitor(api)
    (await visitor.get(there.path("/residents/lookup?booking_number=R-1"))).problem(403)
    assert (await visitor.get(here.path("/residents/lookup?booking_number=R-1"))).ok()["id"] == here.resident_id
