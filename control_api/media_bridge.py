"""The in-process media plane: the SFU and signaling inside the control API's process.

This is the embedded default (`openvisit serve`): commands reach the SFU by a method call
(`AppContext.media`), and the SFU's visit events are applied to the database directly, with the
same code the HTTP event intake uses. A separate media node uses `sfu.events.ControlApiEventSink`
and `/v1/internal/media-events` instead; the SFU cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from aiohttp import web
from sqlalchemy import select

from control_api.context import CONTEXT, AppContext
from control_api.db.models import Visit
from control_api.metrics import METRICS
from openvisit.join_tokens import JoinTokenVerifier
from sfu.aiortc_adapter import restrict_host_candidates, restrict_udp_ports
from sfu.events import VisitEvent
from sfu.metrics import EventLoopLag, SfuCollector
from sfu.recording.storage import LocalFolderStorage
from sfu.service import Sfu
from signaling.server import signaling_handler

log = logging.getLogger(__name__)
SFU = web.AppKey("openvisit_sfu", Sfu)


class ControlPlaneEventSink:
    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def report(self, event: VisitEvent) -> None:
        from control_api.services.visit_outcomes import record_event

        ctx: AppContext = self.app[CONTEXT]
        async with ctx.sessions() as session, session.begin():
            visit = (await session.scalars(select(Visit).where(Visit.id == event.visit_id)
                                           .with_for_update())).one_or_none()
            if visit is None:
                log.warning("event for unknown visit %s", event.visit_id)
                return
            body = event.to_json()
            fields = ("reason", "disconnect_reason", "connected_seconds", "detail", "actor", "manifest")
            data: dict[str, object] = {k: body[k] for k in fields if k in body}
            await record_event(session, ctx, visit=visit, event_id=event.event_id, kind=event.kind,
                               participant=event.participant, occurred_at=event.occurred_at, data=data,
                               now=ctx.clock.now())


def install_embedded_media(app: web.Application) -> None:
    """Mount /v1/signaling and run an SFU whose clock is the control plane's (test clock aware)."""

    def now() -> datetime:
        return app[CONTEXT].clock.now()

    def verifier() -> JoinTokenVerifier:
        return JoinTokenVerifier(app[CONTEXT].join_tokens.public_key)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        ctx = app[CONTEXT]
        undo = [restrict_host_candidates(ctx.settings.media_addresses)] if ctx.settings.media_addresses else []
        if ctx.settings.udp_port_range is not None:
            undo.append(restrict_udp_ports(*ctx.settings.udp_port_range))
        sfu = Sfu(ControlPlaneEventSink(app), now,
                  ice_servers=[s.model_dump(exclude_none=True) for s in ctx.settings.ice_servers],
                  media_timeout=ctx.settings.media_timeout_seconds,
                  recordings=LocalFolderStorage(ctx.settings.recordings_dir,
                                                min_free_bytes=ctx.settings.recordings_min_free_mb * 1024 * 1024))
        app[SFU] = sfu
        ctx.media = sfu
        lag = EventLoopLag()
        lag.start()
        collector = SfuCollector(sfu, lag)
        app[METRICS].registry.register(collector)
        recovery = asyncio.create_task(sfu.recover_recordings())  # R1: a crash's orphans, in the background
        yield
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await recovery
        app[METRICS].registry.unregister(collector)
        await lag.stop()
        await sfu.close()
        for step in undo:
            step()

    async def health(_request: web.Request) -> web.Response:
        """The embedded media plane's health, with its `recordings` section (folder, free bytes,
        threshold, whether new recordings start)."""
        return web.json_response(app[SFU].health())

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/signaling", signaling_handler(lambda: app[SFU], verifier, now))
    app.router.add_get("/v1/health", health)
