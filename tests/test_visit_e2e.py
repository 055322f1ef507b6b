"""A whole visit through the real API and the embedded SFU, with two aiortc WebRTC clients:
booking, kiosk check-in, join tokens, media both ways, an officer's disconnect (S4) and the
scheduled end (S2), and the outcome the control plane records (S6)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from tests.sfu.test_signaling import Client, Stack, connect
from tests.support import Api, As
from tests.support_booking import at, book
from tests.support_facility import FacilityWorld, build_facility


async def _live_visit(api: Api, length: int = 20) -> tuple[FacilityWorld, As, dict[str, Any]]:
    w = await build_facility(api, options=[{"visit_type": "social", "length_minutes": length, "price_cents": 500}])
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1), length=length)).ok(201)
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    (await w.kiosk.post(f"/v1/visits/{visit['id']}/check-in")).ok()
    return w, visitor, visit


async def _both_receive_video(a: Client, b: Client) -> None:
    for _ in range(80):
        if a.received["video"] and b.received["video"]:
            return
        await asyncio.sleep(0.1)


async def _join(api: Api, who: As, visit_id: str) -> Client:
    joined = (await who.post(f"/v1/visits/{visit_id}/join")).ok()
    assert joined["signaling_url"].endswith("/v1/signaling")
    url = f"ws://{api.client.server.host}:{api.client.server.port}/v1/signaling"
    stack = Stack(url, None, None, None)  # type: ignore[arg-type]
    return await connect(stack, joined["join_token"])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_s4_officer_disconnect_through_the_api_reaches_both_parties(api: Api, loopback_only: None) -> None:
    w, visitor, visit = await _live_visit(api)
    family = await _join(api, visitor, visit["id"])
    kiosk = await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(family, kiosk)
        assert family.received["video"] and kiosk.received["video"]
        metrics = await (await api.client.get("/metrics")).text()
        values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                  if line.startswith("openvisit_") and " " in line}
        assert values["openvisit_sfu_rooms"] == 1 and values["openvisit_sfu_peers"] == 2
        assert values["openvisit_sfu_frames_forwarded_total"] > 0 and values["openvisit_sfu_pli_sent_total"] >= 1
        assert "openvisit_sfu_packets_retransmitted_total" in values  # exported (loopback loses nothing to count)
        assert values["openvisit_sfu_datagrams_refused_total"] == 0  # exported; loopback's buffers kept up
        assert values["openvisit_sfu_join_to_first_frame_seconds_count"] >= 1
        assert values["openvisit_sfu_video_thinned_consumers"] == 0  # good links are never thinned
        assert "openvisit_event_loop_lag_seconds" in values
        (await w.investigator.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "conduct"})).problem(403)
        done = (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "conduct"})).ok()
        assert done["disconnected"] is True
        for client in (family, kiosk):
            ended = await client.wait_message("ended", within=5)
            assert (ended["reason"], ended["disconnect_reason"]) == ("disconnected", "conduct")
        for _ in range(50):
            got = (await visitor.get(f"/v1/visits/{visit['id']}")).ok()
            if got["status"] != "in_progress" and got["status"] != "scheduled":
                break
            await asyncio.sleep(0.1)
        assert (got["status"], got["disconnect_reason"]) == ("disconnected", "conduct")
        assert (await visitor.get("/v1/me/balance")).ok()["available_cents"] == 0  # M4: no credit
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "conduct"})).problem(409)
    finally:
        await family.close()
        await kiosk.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_s2_the_visit_ends_at_its_scheduled_end_and_is_recorded_completed(api: Api,
                                                                               loopback_only: None) -> None:
    w, visitor, visit = await _live_visit(api)
    end = datetime.fromisoformat(visit["ends_at"])
    family = await _join(api, visitor, visit["id"])
    kiosk = await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(family, kiosk)
        # Jump to 3 s before the end: the SFU follows the control plane's (test) clock.
        await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) - 3)
        ended = await family.wait_message("ended", within=10)
        assert ended["reason"] == "completed"
        for _ in range(50):
            got = (await visitor.get(f"/v1/visits/{visit['id']}")).ok()
            if got["status"] == "completed":
                break
            await asyncio.sleep(0.1)
        assert got["status"] == "completed"
        assert (await kiosk.wait_message("ended", within=2))["reason"] == "completed"
    finally:
        await family.close()
        await kiosk.close()
