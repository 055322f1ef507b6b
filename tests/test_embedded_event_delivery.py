"""The embedded media plane's outbox delivery (control_api/media_bridge.py: ControlPlaneEventSink):
an event is applied in one database transaction, once by its id (S6); an unknown visit is refused
for good (the outbox dead-letters it); a database that does not answer means "retry later", never
"lost" (issue 11)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from control_api.context import CONTEXT
from control_api.db.engine import make_engine, make_sessionmaker
from control_api.media_bridge import ControlPlaneEventSink
from sfu.events import DeliveryFailed, DeliveryRefused, VisitEvent
from tests.support import Api
from tests.support_visits import load_visit, seed_visit, seed_world


async def test_s6_embedded_delivery_applies_once_refuses_unknown_visits_and_retries_a_dead_database(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-1))
    app = api.client.app
    delivery = ControlPlaneEventSink(app)
    joined = VisitEvent(v["id"], "participant_joined", api.ctx.clock.now(), participant="visitor",
                        session_id="room-1", node_id="node-1")
    await delivery.deliver(joined)
    await delivery.deliver(joined)  # a redelivery after a crash: acknowledged, changes nothing
    assert (await load_visit(api, v["id"])).visitor_joined_at is not None
    with pytest.raises(DeliveryRefused):
        await delivery.deliver(VisitEvent("no-such-visit", "started", api.ctx.clock.now()))

    dead = make_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")  # nothing listens there
    ctx = app[CONTEXT]
    sessions, ctx.sessions = ctx.sessions, make_sessionmaker(dead)  # the database stops answering
    try:
        with pytest.raises(DeliveryFailed, match="database unavailable"):
            await delivery.deliver(VisitEvent(v["id"], "started", api.ctx.clock.now()))
    finally:
        ctx.sessions = sessions
        await dead.dispose()
    await delivery.deliver(VisitEvent(v["id"], "started", api.ctx.clock.now()))  # and back: applied
    assert (await load_visit(api, v["id"])).status == "in_progress"
