"""The application factory. Nothing happens at import time: `create_app` builds the app and
its startup hook opens the database, loads keys and starts the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from control_api.api import ApiRoutes
from control_api.auth import AccessTokens
from control_api.context import CONTEXT, AppContext
from control_api.db.engine import make_engine, make_sessionmaker
from control_api.db.models import ClockState
from control_api.db.outage import DB_OUTAGE, OutageTracker, Unavailability, database_unavailability, describe
from control_api.join_tokens import JoinTokenSigner
from control_api.metrics import METRICS, ApiMetrics
from control_api.payments.gateway import PaymentGateway
from control_api.payments.test_gateway import TestPaymentGateway
from control_api.problems import problem_middleware
from control_api.services.media_sessions import LeaseWatcher
from openvisit.clock import Clock
from openvisit.keys import load_or_create_secret, load_or_create_signing_key
from openvisit.settings import Settings

log = logging.getLogger(__name__)
ROUTES = web.AppKey("openvisit_routes", ApiRoutes)
SHUTDOWN_TIMEOUT = 2.0


def build_routes() -> ApiRoutes:
    from control_api.routes import all_routes

    return all_routes()


async def load_clock(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Clock:
    """The movable clock resumes at the offset it had (demo/test mode); production never moves."""
    clock = Clock(movable=settings.test_clock_enabled)
    if clock.movable:
        async with sessions() as session:
            state = await session.scalar(select(ClockState).where(ClockState.id == 1))
        if state is not None:
            clock.set_offset(timedelta(seconds=state.offset_seconds))
    return clock


def create_app(settings: Settings, *, gateway: PaymentGateway | None = None,
               run_sweeper: bool = True, embedded_media: bool | None = None) -> web.Application:
    metrics = ApiMetrics()
    app = web.Application(middlewares=[metrics.middleware(), problem_middleware], client_max_size=32 * 1024 * 1024)
    app[METRICS] = metrics
    routes = build_routes()
    app[ROUTES] = routes
    outage = app[DB_OUTAGE] = OutageTracker()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.effective_database_url)
        read_engine = engine
        extra = []
        if engine.dialect.name == "sqlite":
            # Reads use plain deferred transactions so they never queue behind the write lock.
            read_engine = create_async_engine(settings.effective_database_url, connect_args={"timeout": 30})
            extra.append(read_engine)
        for eng in (engine, *extra):
            outage.watch(eng)
        sessions = make_sessionmaker(engine)
        read_sessions = make_sessionmaker(read_engine)
        keys_dir = settings.keys_dir
        ctx = AppContext(
            settings=settings,
            engine=engine,
            sessions=sessions,
            read_sessions=read_sessions,
            clock=await load_clock(settings, read_sessions),
            access_tokens=AccessTokens(settings.jwt_secret or load_or_create_secret(keys_dir, "jwt-secret"),
                                       timedelta(minutes=settings.access_token_minutes)),
            join_tokens=JoinTokenSigner(load_or_create_signing_key(keys_dir)),
            gateway=gateway or TestPaymentGateway(),
            media_secret=settings.media_secret or load_or_create_secret(keys_dir, "media-secret"),
            extra_engines=extra,
        )
        app[CONTEXT] = ctx
        sweeper = asyncio.create_task(_sweep_forever(ctx, outage)) if run_sweeper else None
        def lost(_node_id: str, visits: int) -> None:
            metrics.media_nodes_lost.inc()
            metrics.visits_interrupted.inc(visits)

        ctx.media_leases = LeaseWatcher(ctx, lease=settings.media_lease_seconds,
                                        interval=min(1.0, settings.media_heartbeat_seconds), on_lost=lost)
        await ctx.media_leases.start()
        try:
            yield
        finally:
            await ctx.media_leases.stop()
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            for eng in (engine, *extra):
                await eng.dispose()

    app.cleanup_ctx.append(lifecycle)
    routes.install(app)
    from control_api.docs_routes import install_docs

    install_docs(app, routes)
    app.router.add_get("/metrics", metrics.handler)
    if settings.embedded_media if embedded_media is None else embedded_media:
        from control_api.media_bridge import install_embedded_media

        install_embedded_media(app)
    return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Run `app` on host:port (port 0 picks a free one); returns the runner and the bound port."""
    # shutdown_timeout: live visits are ended (and their sockets closed) in on_shutdown; what
    # is still open after this is cut, so SIGTERM finishes within seconds.
    runner = web.AppRunner(app, access_log=logging.getLogger("openvisit.access"), shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port  # type: ignore[attr-defined]
    return runner, int(bound)


async def _sweep_forever(ctx: AppContext, outage: OutageTracker) -> None:
    """Sweeps are idempotent, so a failed round is simply retried next interval. While the database
    is down that is one line per outage (shared with requests), not a traceback per interval."""
    from control_api.services.sweeps import run_sweeps

    while True:
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)
        try:
            await run_sweeps(ctx)
        except Exception as exc:
            why = database_unavailability(exc)
            if why is Unavailability.OUTAGE:
                outage.failed(exc, "sweep")
            elif why is Unavailability.BUSY:
                log.warning("sweep met a busy database (%s); will retry", describe(exc))
            else:
                log.exception("sweep failed; will retry")
