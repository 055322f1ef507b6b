"""The in-process media plane: the SFU and signaling inside the control API's process.

This is the embedded default (`openvisit serve`): commands reach the SFU by a method call
(`AppContext.media`), and the SFU's visit events go through an outbox (sfu/outbox.py, its own
file: `media-outbox-embedded.sqlite3`) whose delivery applies them to the database directly, with
the same code the HTTP event intake uses. While the database is down, events wait on disk and are
retried, not lost. A separate media node delivers the same outbox over HTTP
(`sfu.events.HttpDelivery`, `/v1/internal/media-events`); the SFU cannot tell the difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import select

from control_api.context import CONTEXT, AppContext
from control_api.db.models import Visit
from control_api.db.outage import describe, is_database_outage
from control_api.metrics import METRICS
from openvisit.join_tokens import JoinTokenVerifier
from sfu.aiortc_adapter import announce_host_address, restrict_host_candidates, restrict_udp_ports
from sfu.events import DeliveryFailed, DeliveryRefused, VisitEvent
from sfu.heartbeat import Heartbeat, Transport
from sfu.metrics import EventLoopLag, SfuCollector
from sfu.node import OUTBOX_FLUSH_SECONDS
from sfu.node_state import NodeState, state_file_next_to
from sfu.outbox import Outbox, OutboxCollector
from sfu.recording.storage import LocalFolderStorage
from sfu.service import Sfu
from signaling.server import signaling_handler

log = logging.getLogger(__name__)
SFU = web.AppKey("openvisit_sfu", Sfu)
DELIVERY_TIMEOUT = 120.0


class ControlPlaneEventSink:
    """The embedded outbox's delivery: one event, one database transaction (`record_event`).
    Returning is the acknowledgement (the transaction committed). An unknown visit is refused for
    good (dead letter); an unavailable database is retried (`is_database_outage`); any other
    error is logged with its traceback and retried, as a 500 over HTTP would be."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def deliver(self, event: VisitEvent) -> None:
        from control_api.services.visit_outcomes import record_event

        ctx: AppContext = self.app[CONTEXT]
        try:
            async with ctx.sessions() as session, session.begin():
                visit = (await session.scalars(select(Visit).where(Visit.id == event.visit_id)
                                               .with_for_update())).one_or_none()
                if visit is None:
                    raise DeliveryRefused(f"event for unknown visit {event.visit_id}")
                body = event.to_json()
                fields = ("reason", "disconnect_reason", "connected_seconds", "detail", "actor", "manifest", "source",
                      "verified")
                data: dict[str, object] = {k: body[k] for k in fields if k in body}
                await record_event(session, ctx, visit=visit, event_id=event.event_id, kind=event.kind,
                                   participant=event.participant, occurred_at=event.occurred_at, data=data,
                                   now=ctx.clock.now(), session_id=event.session_id, node_id=event.node_id)
        except DeliveryRefused:
            raise
        except Exception as exc:
            if is_database_outage(exc):
                raise DeliveryFailed(f"database unavailable: {describe(exc)}") from exc
            log.exception("applying %s %s failed; it stays in the outbox and is retried", event.kind, event.event_id)
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        return None


def in_process_heartbeat(app: web.Application) -> Transport:
    """The embedded media plane's heartbeat: the same lease and session bookkeeping as
    `/v1/internal/media-heartbeat`, by a direct call."""
    from control_api.services import media_sessions

    async def send(payload: dict[str, Any]) -> dict[str, Any]:
        ctx: AppContext = app[CONTEXT]
        reports = [media_sessions.SessionReport(s["session_id"], s["visit_id"], int(s["connected_seconds"]))
                   for s in payload["sessions"]]
        async with ctx.sessions() as session, session.begin():
            await media_sessions.record_heartbeat(session, node_id=payload["node_id"],
                                                  started_at=datetime.fromisoformat(payload["started_at"]),
                                                  sessions=reports, now=ctx.clock.now())
        if ctx.media_leases is not None:
            ctx.media_leases.heard(payload["node_id"])
        return media_sessions.heartbeat_answer(ctx)

    return send


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
        if ctx.settings.media_announced_address is not None:  # behind a 1:1 NAT
            undo.append(announce_host_address(ctx.settings.media_announced_address))
        outbox_path = ctx.settings.media_outbox_file("embedded")
        # attempt_timeout: applying `recording_closed` re-hashes every file of the visit (R2);
        # long recordings on a slow disk must not time out, roll back and retry forever.
        outbox = await Outbox.open(outbox_path, ControlPlaneEventSink(app), name="embedded",
                                   attempt_timeout=DELIVERY_TIMEOUT)
        state = await NodeState.open(state_file_next_to(outbox_path), now())
        sfu = Sfu(outbox, now,
                  ice_servers=[s.model_dump(exclude_none=True) for s in ctx.settings.ice_servers],
                  media_timeout=ctx.settings.media_timeout_seconds,
                  recordings=LocalFolderStorage(ctx.settings.recordings_dir,
                                                min_free_bytes=ctx.settings.recordings_min_free_mb * 1024 * 1024),
                  stall_seconds=ctx.settings.media_stall_seconds, state=state)
        app[SFU] = sfu
        ctx.media = sfu
        if ctx.media_leases is not None:
            ctx.media_leases.local(sfu.node_id)
        heartbeat = Heartbeat(sfu, in_process_heartbeat(app), interval=ctx.settings.media_heartbeat_seconds)
        heartbeat.start()
        lag = EventLoopLag()
        lag.start()
        collectors = [SfuCollector(sfu, lag), OutboxCollector(outbox)]
        for collector in collectors:
            app[METRICS].registry.register(collector)
        recovery = asyncio.create_task(sfu.recover_recordings())  # R1: a crash's orphans, in the background
        yield
        recovery.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await recovery
        for collector in collectors:
            app[METRICS].registry.unregister(collector)
        await lag.stop()
        await heartbeat.stop()
        try:
            await sfu.close()
        finally:  # before the engine is disposed: a last try, the rest waits on disk for the next start
            await outbox.close(OUTBOX_FLUSH_SECONDS)
            await state.close()
        for step in undo:
            step()

    async def end_live_visits(app: web.Application) -> None:
        """On shutdown, before the server waits for open requests: end every live visit (`failed`,
        credited, M6), telling the parties why and closing their sockets, so SIGTERM is quick."""
        if SFU in app:
            await app[SFU].close()
    async def health(_request: web.Request) -> web.Response:
        """The embedded media plane's health, with its `recordings` section (folder, free bytes,
        threshold, whether new recordings start)."""
        return web.json_response(app[SFU].health())

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(end_live_visits)
    app.router.add_get("/v1/signaling", signaling_handler(lambda: app[SFU], verifier, now))
    app.router.add_get("/v1/health", health)
