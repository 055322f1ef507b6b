"""A standalone media node (`openvisit sfu`) against the real control API: it fetches the public
key, verifies join tokens minted by the API, and reports the visit's events over HTTP with the
media secret, which the control plane turns into the visit's outcome (S6, M4)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from control_api.app import start_site
from sfu.events import HttpDelivery
from sfu.node import create_media_node_app, fetch_verifier
from sfu.outbox import Outbox
from tests.sfu.test_signaling import Stack, connect
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_media_node_reports_to_the_control_api_over_http(api: Api, loopback_only: None, tmp_path: Path) -> None:
    control_url = f"http://{api.client.server.host}:{api.client.server.port}"
    w = await build_facility(api, options=[{"visit_type": "social", "length_minutes": 20, "price_cents": 500}])
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1), length=20)).ok(201)
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    (await w.kiosk.post(f"/v1/visits/{visit['id']}/check-in")).ok()

    verifier = await fetch_verifier(control_url)  # the public half only
    outbox = await Outbox.open(tmp_path / "outbox.sqlite3", HttpDelivery(control_url, api.ctx.media_secret))
    app, sfu = create_media_node_app(verifier, outbox, now=api.ctx.clock.now)
    runner, port = await start_site(app, "127.0.0.1", 0)
    node = Stack(f"ws://127.0.0.1:{port}/v1/signaling", sfu, None, None)  # type: ignore[arg-type]
    family = await connect(node, (await visitor.post(f"/v1/visits/{visit['id']}/join")).ok()["join_token"])
    kiosk = await connect(node, (await w.kiosk.post(f"/v1/visits/{visit['id']}/join")).ok()["join_token"])
    try:
        for _ in range(80):
            if family.received["video"] and kiosk.received["video"]:
                break
            await asyncio.sleep(0.1)
        assert family.received["video"] and kiosk.received["video"]
        for _ in range(50):
            if (await visitor.get(f"/v1/visits/{visit['id']}")).ok()["status"] == "in_progress":
                break
            await asyncio.sleep(0.1)
        assert (await visitor.get(f"/v1/visits/{visit['id']}")).ok()["status"] == "in_progress"
        assert await sfu.disconnect(visit["id"], "facility")
        assert (await kiosk.wait_message("ended", within=5))["disconnect_reason"] == "facility"
        for _ in range(50):
            got = (await visitor.get(f"/v1/visits/{visit['id']}")).ok()
            if got["status"] == "disconnected":
                break
            await asyncio.sleep(0.1)
        assert (got["status"], got["disconnect_reason"]) == ("disconnected", "facility")
    finally:
        await family.close()
        await kiosk.close()
        await runner.cleanup()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_node_restarted_while_the_control_api_is_down_uses_the_cached_public_key(
        api: Api, tmp_path: Path) -> None:
    control_url = f"http://{api.client.server.host}:{api.client.server.port}"
    cache = tmp_path / "control-public-key.pem"
    fetched = await fetch_verifier(control_url, cache=cache)
    assert cache.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    gone = "http://127.0.0.1:9"  # nothing listens there: the control API is down
    with pytest.raises(aiohttp.ClientError):
        await fetch_verifier(gone)
    cached = await fetch_verifier(gone, cache=cache)
    token, _ = api.ctx.join_tokens.issue(visit_id="v-1", participant_id="p-1", participant_role="visitor",
                                         visit_type="social", visit_starts_at=api.ctx.clock.now(),
                                         visit_ends_at=api.ctx.clock.now() + timedelta(minutes=5),
                                         not_before=api.ctx.clock.now() - timedelta(minutes=1),
                                         expires_at=api.ctx.clock.now() + timedelta(minutes=2))
    now = api.ctx.clock.now()
    assert cached.verify(token, now).visit_id == fetched.verify(token, now).visit_id == "v-1"
