"""The control API stops and comes back while a standalone media node runs a visit (issue 11).

The real app (`create_app`, SQLite file) is stopped and started again on the same port; the node
is the real signaling + SFU with its outbox delivering over HTTP; two aiortc clients are the
parties. While the API is down the visitor drops and rejoins with its resume token (S5), and the
visit ends (an officer's facility disconnect, given to the node, S4). When the API returns,
every event the node reported during the outage is applied, each once (S6), and the per-minute
charge follows the connected seconds the node reported (M8).

OPENVISIT_OUTAGE_SECONDS makes the outage longer (default 8 s; the issue measured 281 s).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from control_api.app import create_app, start_site
from control_api.context import CONTEXT
from control_api.db.models import Visit, VisitEvent
from control_api.payments.simulated_gateway import SimulatedPaymentGateway
from openvisit.settings import Settings
from sfu.events import HttpDelivery
from sfu.node import create_media_node_app, fetch_verifier
from sfu.node_state import NodeState
from sfu.outbox import Backoff, Outbox
from tests.sfu.test_signaling import Client, Stack, connect
from tests.support import Api
from tests.support_visits import seed_visit, seed_world

OUTAGE = float(os.environ.get("OPENVISIT_OUTAGE_SECONDS", "8"))


async def _control_api(settings: Settings, gateway: SimulatedPaymentGateway, port: int = 0) -> TestClient:
    client = TestClient(TestServer(create_app(settings, gateway=gateway, run_sweeper=False, embedded_media=False),
                                   host="127.0.0.1", port=port))
    await client.start_server()
    return client


async def _flowing(receiver: Client, more_than: int = 10) -> bool:
    start = len(receiver.received["video"])
    for _ in range(80):
        if len(receiver.received["video"]) > start + more_than:
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_events_during_a_control_api_outage_are_applied_once_when_it_returns(
        settings: Settings, gateway: SimulatedPaymentGateway, tmp_path: Path, loopback_only: None) -> None:
    client = await _control_api(settings, gateway)
    api = Api(client, client.app[CONTEXT], gateway)
    port = client.server.port
    assert port is not None
    control_url = f"http://127.0.0.1:{port}"
    w = await seed_world(api, billing_mode="per_minute", per_minute_cents=20)
    v = await seed_visit(api, w, starts_in=timedelta(seconds=-2), length=30, checked_in=True)
    visitor_token = (await w.visitor.post(f"/v1/visits/{v['id']}/join")).ok()["join_token"]
    kiosk_token = (await w.kiosk.post(f"/v1/visits/{v['id']}/join")).ok()["join_token"]

    outbox = await Outbox.open(tmp_path / "media-outbox-node.sqlite3", HttpDelivery(control_url, api.ctx.media_secret),
                               name="node", backoff=Backoff(base=0.25, cap=2.0))
    state = await NodeState.open(tmp_path / "media-state-node.sqlite3", api.ctx.clock.now())
    app, sfu = create_media_node_app(await fetch_verifier(control_url), outbox, state=state)
    runner, node_port = await start_site(app, "127.0.0.1", 0)
    node = Stack(f"ws://127.0.0.1:{node_port}/v1/signaling", sfu, None, None)  # type: ignore[arg-type]
    family = await connect(node, visitor_token)
    kiosk = await connect(node, kiosk_token)
    resume = family.messages[0]["resume_token"]
    rejoined: Client | None = None
    try:
        assert await _flowing(family) and await _flowing(kiosk)
        assert await outbox.drained(10)  # joins and `started` went straight through
        assert (await w.visitor.get(f"/v1/visits/{v['id']}")).ok()["status"] == "in_progress"

        await client.close()  # the control API stops (its database file stays)
        down_at = time.monotonic()
        await family.close()  # the visitor's connection drops during the outage...
        await kiosk.wait_message("participant_left")
        rejoined = await connect(node, None, resume=resume)  # ...and comes back without the API (S5)
        assert rejoined.messages[0]["type"] == "joined", rejoined.messages
        assert await _flowing(rejoined) and await _flowing(kiosk)
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at) - 0.5))
        assert await sfu.disconnect(v["id"], "facility")  # the visit ends while the API is away (S4)
        await kiosk.wait_message("ended", within=5)
        await asyncio.sleep(0.3)
        pending = outbox.pending_events()
        assert [e.kind for e in pending] == ["participant_left", "participant_joined", "ended"]
        assert outbox.retries > 0  # the node kept trying, and kept everything
        reported_seconds = pending[-1].connected_seconds
        assert reported_seconds is not None and reported_seconds >= 3

        client = await _control_api(settings, gateway, port)  # the control API returns on the same port
        outage = time.monotonic() - down_at
        api.client, api.ctx = client, client.app[CONTEXT]
        returned_at = time.monotonic()
        assert await outbox.drained(30)
        drained_in = time.monotonic() - returned_at
        print(f"outage {outage:.1f} s: {len(pending)} events kept, {outbox.retries} retries; "
              f"all delivered {drained_in:.2f} s after the API returned; connected {reported_seconds} s")

        async with api.ctx.read_sessions() as session:
            rows = (await session.scalars(select(VisitEvent).where(VisitEvent.visit_id == v["id"]))).all()
            visit = await session.get(Visit, v["id"])
        ids = [r.event_id for r in rows]
        assert len(ids) == len(set(ids))  # each applied once
        assert {e.event_id for e in pending} <= set(ids)  # everything from the outage arrived
        kinds = sorted(r.kind for r in rows)
        assert kinds == sorted(["participant_joined"] * 3 + ["participant_left", "started", "ended"])
        assert visit is not None
        assert (visit.status, visit.disconnect_reason) == ("disconnected", "facility")
        assert visit.connected_seconds == reported_seconds  # what the node measured (S6)
        charged = math.ceil(reported_seconds / 60) * 20  # M8: started minutes with media flowing, not all 30
        balance = (await w.visitor.get("/v1/me/balance")).ok()
        assert balance["available_cents"] == v["total_cents"] - charged
    finally:
        for c in (family, kiosk, rejoined):
            if c is not None:
                await c.close()
        await runner.cleanup()  # the node's shutdown closes its outbox and state
        await client.close()
