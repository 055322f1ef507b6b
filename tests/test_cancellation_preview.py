"""GET /v1/visits/{id}/cancellation (issue 13): before confirming a cancellation, the person is told
whether a credit will be given and why (rules M3, M4), by the same rule the cancellation applies."""

from __future__ import annotations

from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility

FEES = [{"name": "Service fee", "kind": "fee", "amount_cents": 100}]


async def test_visitor_with_notice_is_told_the_credit_and_gets_it(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=24, fees=FEES, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=3))).ok(201)
    p = (await w.visitor.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert p["cancellable"] is True and p["cancelled_by"] == "visitor"
    assert (p["credit_cents"], p["credit_rule"], p["reason"]) == (750, "M3a", "notice_given")  # rule M3a
    assert p["fees_cents"] == 100 and "M7" in p["detail"]  # fees never credited (M7)
    assert p["notice_hours"] == 24 and p["credit_deadline"] < v["starts_at"]
    # the preview changes nothing; the cancellation then does what it said
    assert (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()["status"] == "scheduled"
    done = (await w.visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "plans changed"},
                                 idempotency_key=True)).ok()
    assert (done["credited_cents"], done["credit_rule"]) == (p["credit_cents"], p["credit_rule"])
    after = (await w.visitor.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert (after["cancellable"], after["reason"], after["credit_cents"]) == (False, "not_cancellable", 0)


async def test_short_notice_is_told_no_credit_and_gets_none(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=1))).ok(201)
    p = (await w.visitor.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert (p["cancellable"], p["credit_cents"], p["credit_rule"], p["reason"]) == (True, 0, None, "short_notice")
    assert "48" in p["detail"]  # rule A6: the notice is named
    done = (await w.visitor.post(f"/v1/visits/{v['id']}/cancel", {"reason": "x"}, idempotency_key=True)).ok()
    assert done["credited_cents"] == 0 and done["credit_rule"] is None


async def test_facility_and_operator_previews_credit_and_started_visits_do_not(api: Api) -> None:
    w = await build_facility(api, cancellation_notice_hours=48, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=1))).ok(201)
    by_admin = (await w.admin.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert (by_admin["cancelled_by"], by_admin["credit_rule"], by_admin["reason"]) == ("facility", "M3b",
                                                                                       "facility_cancels")
    by_operator = (await w.operator.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert (by_operator["credit_rule"], by_operator["credit_cents"]) == ("M3d", 750)
    # rule M4: once the start has passed, no credit and no cancellation
    await api.advance(w.operator, 2 * 86400)
    p = (await w.visitor.get(f"/v1/visits/{v['id']}/cancellation")).ok()
    assert (p["cancellable"], p["credit_cents"]) == (False, 0)
    assert p["reason"] in ("started", "not_cancellable") and p["as_of"] > v["starts_at"]


async def test_others_cannot_preview(api: Api) -> None:
    w = await build_facility(api, visitor=True)
    assert w.visitor is not None
    v = (await book(w.visitor, w.resident_id, at(api, days=2))).ok(201)
    stranger = await w.approved_visitor(api)
    assert (await stranger.get(f"/v1/visits/{v['id']}/cancellation")).status == 404
    other = await build_facility(api)
    assert (await other.admin.get(f"/v1/visits/{v['id']}/cancellation")).status == 403  # rule V3
    assert (await w.investigator.get(f"/v1/visits/{v['id']}/cancellation")).status == 403
