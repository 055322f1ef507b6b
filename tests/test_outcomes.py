"""Visit outcomes (S6), automatic credit for failures (M6), no credit for disconnects (M4),
per-minute settlement (M8), and the sweep that closes visits nobody reported.

Visits are ORM rows paid through the real billing service (tests/support_visits.py); events
arrive over HTTP as from a media node. Every scenario ends with a balanced ledger (M1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from control_api.domain.outcomes import Attendance, Presence, both_present_seconds, final_status
from tests.support import Api
from tests.support_visits import (
    ledger_balanced,
    load_visit,
    report,
    run_visit,
    seed_visit,
    seed_world,
    sweep_now,
)

PAST = timedelta(minutes=-40)  # a 30-minute visit that ended 10 minutes ago (the sweep's grace is 60 s)


def _start(v: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(v["starts_at"])


async def _rules(api: Api, visitor: Any) -> list[tuple[str, str, int]]:
    return [(x["kind"], x["rule"], x["amount_cents"]) for x in (await visitor.get("/v1/me/statement")).ok()]


async def test_s6_completed_when_both_joined_and_the_end_was_reported(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, v, end={"reason": "completed", "detail": "the visit reached its scheduled end"})
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("completed", 1800)
    assert visit.ended_at == _start(v) + timedelta(minutes=30)
    assert visit.media_started_at == _start(v) + timedelta(seconds=6)
    assert (visit.visitor_joined_at, visit.resident_joined_at) == (_start(v), _start(v) + timedelta(seconds=5))
    assert await _rules(api, w.visitor) == [("visit_payment", "B6", -750)]  # per visit: nothing moves at the end
    assert await ledger_balanced(api)


async def test_s6_no_shows_decided_from_who_joined_when_the_end_is_reported(api: Api) -> None:
    w = await seed_world(api)
    visitor_only = await seed_visit(api, w, starts_in=PAST)
    resident_only = await seed_visit(api, w, starts_in=PAST, checked_in=True)
    await run_visit(api, visitor_only, resident=False, end={"reason": "completed"}, connected_seconds=0)
    await run_visit(api, resident_only, visitor=False, end={"reason": "completed"}, connected_seconds=0)
    assert (await load_visit(api, visitor_only["id"])).status == "no_show_resident"
    gone = await load_visit(api, resident_only["id"])
    assert gone.status == "no_show_visitor" and gone.ended_reason == "the visitor did not join"
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0  # M4: no credit after start
    assert await ledger_balanced(api)


async def test_s6_media_that_flowed_proves_both_were_there_even_if_join_reports_arrive_late(api: Api) -> None:
    """Reports are retried independently; an end with connected time is `completed`, and late
    join reports for the finished visit are stored without changing it."""
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    start = _start(v)
    ack = await report(api, v["id"], "ended", start + timedelta(minutes=30), reason="completed", connected_seconds=600)
    assert ack["visit_status"] == "completed"
    late = await report(api, v["id"], "participant_joined", start, participant="visitor")
    assert (late["accepted"], late["duplicate"], late["visit_status"]) == (True, False, "completed")
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds, visit.visitor_joined_at) == ("completed", 600, None)


async def test_m6_a_failed_visit_is_credited_automatically_once(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, v, end={"reason": "failed", "detail": "media never flowed"}, connected_seconds=0)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.ended_reason) == ("failed", "media never flowed")
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 750
    assert [(x["rule"], x["visit_id"], x["amount_cents"]) for x in balance["lots"]] == [("M6", v["id"], 750)]
    # Another failure report for the same visit (a new event id) changes nothing: credited once.
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=1), reason="failed", connected_seconds=0)
    assert await _rules(api, w.visitor) == [("visit_payment", "B6", -750), ("credit_issued", "M6", 750)]
    # A credit request afterwards cannot credit the same visit twice (M6 at most once per visit).
    cr = (await w.visitor.post("/v1/credit-requests", {"visit_id": v["id"], "description": "no video"})).ok(201)
    decided = (await w.operator.post(f"/v1/credit-requests/{cr['id']}/decision", {"decision": "approve"},
                                     idempotency_key=True)).ok()
    assert (decided["status"], decided["credited_cents"]) == ("approved", 0)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 750
    assert await ledger_balanced(api)


async def test_m4_disconnects_get_no_automatic_credit(api: Api) -> None:
    """Conduct and facility disconnects are never credited (M4); a technical disconnect is not
    credited automatically either: a credit request is opened on the visitor's behalf (S4, M6)."""
    w = await seed_world(api)
    for reason in ("conduct", "facility", "technical"):
        v = await seed_visit(api, w, starts_in=PAST)
        await run_visit(api, v, end={"reason": "disconnected", "disconnect_reason": reason}, connected_seconds=300)
        visit = await load_visit(api, v["id"])
        assert (visit.status, visit.disconnect_reason, visit.connected_seconds) == ("disconnected", reason, 300)
        assert visit.ended_reason is not None and reason in visit.ended_reason
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0
    assert [r for _, r, _ in await _rules(api, w.visitor)] == ["B6", "B6", "B6"]
    assert await ledger_balanced(api)

    # S4: the technical one (a fault on the facility's side) opened a credit request for the
    # visitor, due within the M6 deadline; the others did not.
    requests = (await w.visitor.get("/v1/credit-requests")).ok()
    assert len(requests) == 1 and "technical" in requests[0]["description"] and requests[0]["status"] == "open"


async def test_m8_the_tax_on_unused_minutes_returns_with_them(api: Api) -> None:
    """Issue 12's finding: 60 c of tax prepaid, 11 of 30 minutes used: the tax on the 19 unused
    minutes (38 c) returns with them; 22 c is kept (the used minutes' share)."""
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST, tax_basis_points=1000)  # 10% of 600 c
    assert (v["price_cents"], v["total_cents"]) == (600, 660)
    await run_visit(api, v, end={"reason": "completed"}, connected_seconds=11 * 60)
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == (600 - 11 * 20) + 38
    lines = (await w.visitor.get("/v1/me/statement")).ok()
    assert [(x["kind"], x["amount_cents"]) for x in lines] == [("visit_payment", -660), ("per_minute_settlement", 418)]
    assert "tax (0.38) returned" in lines[1]["description"]
    assert await ledger_balanced(api)


def test_m8_unused_tax_share_adds_up() -> None:
    from control_api.domain.pricing import unused_tax_cents

    for tax, price in ((60, 600), (7, 600), (1, 20), (99, 1300), (0, 600)):
        for used in range(0, price + 1, 20):
            back = unused_tax_cents(tax_cents=tax, price_cents=price, used_cents=used)
            assert 0 <= back <= tax
            assert back == (tax if used == 0 else 0 if used == price else back)
    assert unused_tax_cents(tax_cents=60, price_cents=600, used_cents=220) == 38


async def test_m8_per_minute_visit_charges_connected_minutes_and_returns_the_rest_at_once(api: Api) -> None:
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    assert v["total_cents"] == 30 * 20  # the full length is prepaid
    await run_visit(api, v, end={"reason": "completed"}, connected_seconds=12 * 60 + 5)
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == 600 - 13 * 20  # 13 started minutes charged, 340 back
    assert [(x["rule"], x["visit_id"]) for x in balance["lots"]] == [("M8", v["id"])]
    lines = (await w.visitor.get("/v1/me/statement")).ok()
    assert [(x["kind"], x["rule"], x["amount_cents"], x["visit_id"]) for x in lines] == [
        ("visit_payment", "B6", -600, v["id"]), ("per_minute_settlement", "M8", 340, v["id"])]
    assert "13 of 30 min" in lines[1]["description"]
    # A repeated end report (new event id) never settles twice.
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=30), reason="completed", connected_seconds=60)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 340
    assert await ledger_balanced(api)


async def test_m8_m6_a_failed_per_minute_visit_is_credited_in_full_not_settled(api: Api) -> None:
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, v, end={"reason": "failed"}, connected_seconds=125)
    assert await _rules(api, w.visitor) == [("visit_payment", "B6", -600), ("credit_issued", "M6", 600)]
    assert await ledger_balanced(api)


async def test_m4_m8_a_conduct_disconnect_on_a_per_minute_visit_charges_only_connected_minutes(api: Api) -> None:
    """M4 withholds a credit, not M8's billing: unused prepaid minutes still return."""
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, v, end={"reason": "disconnected", "disconnect_reason": "conduct"}, connected_seconds=300)
    assert await _rules(api, w.visitor) == [("visit_payment", "B6", -600), ("per_minute_settlement", "M8", 500)]
    assert await ledger_balanced(api)


async def test_s6_sweep_closes_unreported_visits_as_no_shows_or_completed(api: Api) -> None:
    w = await seed_world(api)
    nobody = await seed_visit(api, w, starts_in=PAST)
    visitor_only = await seed_visit(api, w, starts_in=PAST)
    resident_only = await seed_visit(api, w, starts_in=PAST, checked_in=True)
    both = await seed_visit(api, w, starts_in=PAST)
    await run_visit(api, visitor_only, resident=False)
    await run_visit(api, resident_only, visitor=False)
    await run_visit(api, both)
    swept = await sweep_now(api, w.operator)
    assert swept["close_finished_visits"] == 4
    assert (await load_visit(api, nobody["id"])).status == "no_show_visitor"
    assert (await load_visit(api, visitor_only["id"])).status == "no_show_resident"
    assert (await load_visit(api, resident_only["id"])).status == "no_show_visitor"
    done = await load_visit(api, both["id"])
    assert (done.status, done.connected_seconds) == ("completed", 30 * 60 - 5)  # both present from start + 5 s
    assert done.ended_at == datetime.fromisoformat(both["ends_at"])
    assert (await sweep_now(api, w.operator))["close_finished_visits"] == 0  # idempotent
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0
    assert await ledger_balanced(api)


async def test_s5_m8_sweep_counts_only_time_both_were_present(api: Api) -> None:
    """A drop and rejoin is a gap (S5), so a per-minute visit closed by the sweep is charged for
    the both-present minutes only (M8)."""
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    start = _start(v)
    await run_visit(api, v)
    await report(api, v["id"], "participant_left", start + timedelta(minutes=10), participant="visitor")
    again = await report(api, v["id"], "participant_joined", start + timedelta(minutes=12), participant="visitor")
    assert again["visit_status"] == "in_progress"
    visit = await load_visit(api, v["id"])
    assert visit.visitor_joined_at == start  # the first join stands; the visit did not restart
    assert visit.ends_at == datetime.fromisoformat(v["ends_at"])  # S2: rejoining never extends it
    await sweep_now(api, w.operator)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("completed", (600 - 5) + (1800 - 720))
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 600 - 28 * 20
    assert await ledger_balanced(api)


async def test_sweep_leaves_time_for_the_media_planes_end_report(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-30, seconds=-20))  # ended 20 s ago
    await run_visit(api, v)
    assert (await sweep_now(api, w.operator))["close_finished_visits"] == 0
    assert (await load_visit(api, v["id"])).status == "in_progress"
    # The media plane's report arrives late but inside the grace: its measure wins.
    await report(api, v["id"], "ended", datetime.fromisoformat(v["ends_at"]), reason="completed",
                 connected_seconds=1500)
    assert (await load_visit(api, v["id"])).connected_seconds == 1500
    unreported = await seed_visit(api, w, starts_in=timedelta(minutes=-30, seconds=-20))
    await api.advance(w.operator, 45)  # past end + grace: the clock move runs the sweep
    assert (await load_visit(api, unreported["id"])).status == "no_show_visitor"


async def test_events_for_visits_no_longer_live_are_stored_and_change_nothing(api: Api) -> None:
    w = await seed_world(api)
    for status in ("cancelled", "rejected"):
        v = await seed_visit(api, w, starts_in=timedelta(minutes=-5), status=status)
        for kind, extra in (("participant_joined", {"participant": "visitor"}), ("started", {}),
                            ("ended", {"reason": "failed", "connected_seconds": 0})):
            ack = await report(api, v["id"], kind, _start(v), **extra)
            assert (ack["accepted"], ack["visit_status"]) == (True, status)
        visit = await load_visit(api, v["id"])
        assert (visit.status, visit.visitor_joined_at, visit.ended_at) == (status, None, None)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0  # no M6 credit for those
    assert await ledger_balanced(api)


# ---------------------------------------------------------------- the pure rules


def test_s1_s5_both_present_seconds_counts_overlap_inside_the_visit_only() -> None:
    t0 = datetime(2027, 3, 1, 15, 0, tzinfo=UTC)
    end = t0 + timedelta(minutes=30)

    def at(minutes: float) -> datetime:
        return t0 + timedelta(minutes=minutes)

    lobby = [Presence(at(-8), "participant_joined", "visitor"), Presence(at(-3), "participant_joined", "resident")]
    assert both_present_seconds(lobby, t0, end) == 1800  # lobby time before the start never counts (S1)
    gap = [*lobby, Presence(at(10), "participant_left", "resident"), Presence(at(12), "participant_joined", "resident"),
           Presence(at(20), "participant_left", "visitor")]
    assert both_present_seconds(list(reversed(gap)), t0, end) == (10 + 8) * 60  # order of arrival is irrelevant
    assert both_present_seconds(lobby[:1], t0, end) == 0  # one side alone is never connected time
    late = [Presence(at(25), "participant_joined", "visitor"), Presence(at(26), "participant_joined", "resident")]
    assert both_present_seconds(late, t0, end) == 4 * 60  # joining late never extends the visit (S2)
    assert final_status(Attendance(False, False, media_flowed=True), "completed") == "completed"
    assert final_status(Attendance(True, False, media_flowed=False), None) == "no_show_resident"
