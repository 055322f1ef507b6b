"""Media sessions and node leases (S5, S6, M6, M8): a node's heartbeats keep each room's connected
seconds; a node that goes silent has its visits interrupted within its lease; an interrupted visit
that never resumes is `failed` and credited, one that resumes completes with both sessions' time;
a node that comes back restores its sessions; the sweep waits for a live node's own report.

Everything goes over HTTP as from a media node (heartbeats and events with the media secret), on
SQLite and PostgreSQL; the lease watcher is the real one with a short lease."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from control_api.domain.outcomes import Attendance, SessionView, final_status, interrupted_without_resuming
from control_api.services.media_sessions import LeaseWatcher
from tests.support import Api
from tests.support_visits import (
    ledger_balanced,
    load_visit,
    media_headers,
    report,
    seed_visit,
    seed_world,
    sweep_now,
)

PAST = timedelta(minutes=-40)  # a 30-minute visit that ended 10 minutes ago
LIVE = timedelta(minutes=-5)  # a 30-minute visit 5 minutes in


def _start(v: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(v["starts_at"])


async def heartbeat(api: Api, node: str, sessions: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"node_id": node, "started_at": api.ctx.clock.now().isoformat(), "sessions": sessions}
    answer: dict[str, Any] = (await api.anonymous.post("/v1/internal/media-heartbeat", body,
                                                        headers=media_headers(api))).ok()
    return answer


def session(v: dict[str, Any], sid: str, seconds: int) -> dict[str, Any]:
    return {"session_id": sid, "visit_id": v["id"], "connected_seconds": seconds, "participants": []}


async def both_join(api: Api, v: dict[str, Any], sid: str, node: str, at: datetime) -> None:
    for who in ("visitor", "resident"):
        await report(api, v["id"], "participant_joined", at, participant=who, session_id=sid, node_id=node)
    await report(api, v["id"], "started", at + timedelta(seconds=1), session_id=sid, node_id=node)


@pytest.fixture
async def leases(api: Api) -> Any:
    """The real lease watcher with a 0.5 s lease, in place of the app's 6 s one."""
    watcher = LeaseWatcher(api.ctx, lease=0.5, interval=3600)
    previous, api.ctx.media_leases = api.ctx.media_leases, watcher
    yield watcher
    api.ctx.media_leases = previous


async def _lapse(watcher: LeaseWatcher) -> list[str]:
    await asyncio.sleep(0.6)
    return await watcher.check()


async def test_s5_a_silent_node_interrupts_its_visits_within_its_lease_and_its_return_restores_them(
        api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=LIVE)
    node = f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", node, _start(v))
    answer = await heartbeat(api, node, [session(v, "s-1", 40)])
    assert answer["clock_movable"] is True and answer["lease_seconds"] > 0  # a node follows the test clock
    assert await leases.check() == []  # within the lease: nothing happens
    assert await _lapse(leases) == [v["id"]]
    visit = await load_visit(api, v["id"])
    assert visit.interrupted_at is not None and visit.status == "in_progress"
    shown = (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()
    assert shown["interrupted_at"] is not None
    # S5: still joinable until its end.
    (await w.visitor.post(f"/v1/visits/{v['id']}/join")).ok()
    # The node was only slow: its next heartbeat restores the session and the visit.
    await heartbeat(api, node, [session(v, "s-1", 44)])
    assert (await load_visit(api, v["id"])).interrupted_at is None
    assert await leases.check() == []


async def test_s6_m6_an_interrupted_visit_that_never_resumes_is_failed_and_credited(
        api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    node = f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", node, _start(v))
    await heartbeat(api, node, [session(v, "s-1", 58)])
    await _lapse(leases)  # the node died 58 s into the visit; nobody came back
    await sweep_now(api, w.operator)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("failed", 58)  # not the whole 1800 s
    assert visit.ended_reason == "the media connection was lost on our side and the visit did not resume"
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == v["price_cents"]  # M6
    assert await ledger_balanced(api)


async def test_s5_s6_m8_a_visit_resumed_after_a_crash_completes_and_charges_both_sessions_minutes(
        api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=PAST)
    dead, alive = f"node-{uuid.uuid4().hex}", f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", dead, _start(v))
    await heartbeat(api, dead, [session(v, "s-1", 61)])
    await _lapse(leases)
    assert (await load_visit(api, v["id"])).interrupted_at is not None
    # Both parties rejoin on the restarted node; that session reports its own end.
    await both_join(api, v, "s-2", alive, _start(v) + timedelta(minutes=2))
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=30), reason="completed", connected_seconds=179,
                 session_id="s-2", node_id=alive)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("completed", 240)
    statement = [(x["kind"], x["amount_cents"]) for x in (await w.visitor.get("/v1/me/statement")).ok()]
    # 30 min prepaid at 20 c; 4 minutes used (240 s): the other 26 come back at once (M8).
    assert ("per_minute_settlement", 26 * 20) in statement
    assert await ledger_balanced(api)


async def test_s6_a_lone_party_after_the_crash_is_not_a_resumption(api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    dead, alive = f"node-{uuid.uuid4().hex}", f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", dead, _start(v))
    await heartbeat(api, dead, [session(v, "s-1", 30)])
    await _lapse(leases)
    await report(api, v["id"], "participant_joined", _start(v) + timedelta(minutes=3), participant="visitor",
                 session_id="s-2", node_id=alive)
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=30), reason="completed", connected_seconds=0,
                 session_id="s-2", node_id=alive)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds) == ("failed", 30)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == v["price_cents"]


async def test_s6_the_sweep_waits_for_a_live_nodes_own_report_then_decides_once_it_is_gone(
        api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    node = f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", node, _start(v))
    await heartbeat(api, node, [session(v, "s-1", 900)])
    await sweep_now(api, w.operator)
    assert (await load_visit(api, v["id"])).status == "in_progress"  # its node will say how it ended
    await _lapse(leases)
    await sweep_now(api, w.operator)
    assert (await load_visit(api, v["id"])).status == "failed"


async def test_an_officers_disconnect_stands_even_after_an_interruption(api: Api, leases: LeaseWatcher) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    dead, alive = f"node-{uuid.uuid4().hex}", f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", dead, _start(v))
    await _lapse(leases)
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=3), reason="disconnected",
                 disconnect_reason="conduct", connected_seconds=0, session_id="s-2", node_id=alive)
    assert (await load_visit(api, v["id"])).status == "disconnected"
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0  # M4


async def test_heartbeats_are_for_media_nodes_only_and_validated(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=LIVE)
    body = {"node_id": "n-1", "started_at": api.ctx.clock.now().isoformat(), "sessions": [session(v, "s", 1)]}
    (await api.anonymous.post("/v1/internal/media-heartbeat", body)).problem(401)
    (await w.visitor.post("/v1/internal/media-heartbeat", body)).problem(401)
    bad = {**body, "sessions": [{**session(v, "s", 1), "connected_seconds": -1}]}
    (await api.anonymous.post("/v1/internal/media-heartbeat", bad, headers=media_headers(api))).problem(422)
    ok = (await api.anonymous.post("/v1/internal/media-heartbeat", body, headers=media_headers(api))).ok()
    assert set(ok) == {"now", "clock_movable", "lease_seconds", "interval_seconds"}


def test_s6_interruption_rules() -> None:
    t0 = datetime(2026, 12, 3, 9, 0)
    lost = SessionView(t0, True, 60)
    assert interrupted_without_resuming([lost])
    assert not interrupted_without_resuming([lost, SessionView(t0 + timedelta(minutes=2), False, 5)])
    assert interrupted_without_resuming([lost, SessionView(t0 + timedelta(minutes=2), False, 0)])
    # A session that began before the lost one does not resume it.
    assert interrupted_without_resuming([SessionView(t0 - timedelta(minutes=1), False, 90), lost])
    # Lost again after resuming: interrupted at the end.
    assert interrupted_without_resuming([lost, SessionView(t0 + timedelta(minutes=2), True, 30)])
    both = Attendance(visitor_joined=True, resident_joined=True, media_flowed=True)
    assert final_status(both, "completed", interrupted=True) == "failed"
    assert final_status(both, "disconnected", interrupted=True) == "disconnected"
    assert final_status(Attendance(False, True), None, interrupted=True) == "no_show_visitor"
    assert final_status(both, "completed") == "completed"


async def test_s6_a_session_known_only_from_replayed_events_is_watched_too(api: Api, leases: LeaseWatcher) -> None:
    """A restarted node replays what its dead predecessor left in the outbox: that session's node
    never heartbeats again, so it is taken for lost one lease later, and the visit fails and is
    credited if nobody resumes (not `completed` from its `started` event)."""
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    ghost = f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-ghost", ghost, _start(v))
    assert await _lapse(leases) == [v["id"]]
    await sweep_now(api, w.operator)
    assert (await load_visit(api, v["id"])).status == "failed"
    # A late event of a node already taken for gone opens a session that is lost from the start.
    v2 = await seed_visit(api, w, starts_in=PAST)
    await both_join(api, v2, "s-late", ghost, _start(v2))
    assert (await load_visit(api, v2["id"])).interrupted_at is not None


async def test_s6_a_cut_off_node_that_reports_its_rooms_end_is_not_an_interruption(
        api: Api, leases: LeaseWatcher) -> None:
    """The control link was cut, not the node: it ran the visit to its end and its outbox delivers
    `ended` when the link returns. The session ended properly: completed, not failed."""
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=PAST)
    node = f"node-{uuid.uuid4().hex}"
    await both_join(api, v, "s-1", node, _start(v))
    await heartbeat(api, node, [session(v, "s-1", 60)])
    await _lapse(leases)
    assert (await load_visit(api, v["id"])).interrupted_at is not None
    await report(api, v["id"], "ended", _start(v) + timedelta(minutes=30), reason="completed", connected_seconds=1790,
                 session_id="s-1", node_id=node)
    visit = await load_visit(api, v["id"])
    assert (visit.status, visit.connected_seconds, visit.interrupted_at) == ("completed", 1790, None)
    assert (await w.visitor.get("/v1/me/balance")).ok()["available_cents"] == 0
