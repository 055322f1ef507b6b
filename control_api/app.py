"""The application factory. Nothing happens at import time: `create_app` builds the app and
its startup hook opens the database, loads keys and starts the sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from aiohttp import http_exceptions, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from control_api.api import ApiRoutes
from control_api.auth import AccessTokens
from control_api.context import CONTEXT, AppContext
from control_api.db.engine import make_engine, make_sessionmaker
from control_api.db.models import ClockState
from control_api.db.outage import DB_OUTAGE, OutageTracker, Unavailability, database_unavailability, describe
from control_api.mail import MailDelivery
from control_api.metrics import METRICS, ApiMetrics
from control_api.payments.gateway import PaymentGateway
from control_api.payments.simulated_gateway import SimulatedPaymentGateway
from control_api.problems import ProblemError, problem_middleware, problem_response
from control_api.readiness import install_readiness
from control_api.security_headers import apply_security_headers, security_headers_middleware, signaling_origin
from control_api.services.media_sessions import LeaseWatcher
from openvisit.clock import Clock
from openvisit.forwarded import TrustedProxies, forwarded_middleware
from openvisit.join_tokens import JoinTokenSigner
from openvisit.keys import load_or_create_secret, load_or_create_signing_key
from openvisit.settings import Mode, Settings

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
    # Security headers sit inside metrics and outside problem_middleware, so error answers carry them too.
    # The forwarded-headers middleware is outermost: every later step sees the client's address and
    # scheme, as a trusted reverse proxy reported them (openvisit/forwarded.py, issue 14).
    app = web.Application(middlewares=[forwarded_middleware(TrustedProxies(settings.trusted_proxies)),
                                       metrics.middleware(), security_headers_middleware(settings.signaling_url),
                                       problem_middleware], client_max_size=32 * 1024 * 1024)
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
            gateway=gateway or SimulatedPaymentGateway(),
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
        mail = MailDelivery(ctx)
        if mail.configured:
            mail.start()
        elif settings.mode is Mode.PRODUCTION:
            log.warning("no SMTP server is configured (smtp_host): account mail (confirmations, password resets, "
                        "sign-in notices) waits undelivered in the mail_messages table")
        try:
            yield
        finally:
            await mail.stop()
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
    embedded = settings.embedded_media if embedded_media is None else embedded_media
    install_readiness(app, settings, embedded_media=embedded)  # /livez, /readyz (issue 14)
    if embedded:
        from control_api.media_bridge import install_embedded_media

        install_embedded_media(app)
    return app


# aiohttp's HTTP parser limits, made explicit (issue 12): a request line (method, path and query
# string) or a single header line longer than this is refused with 400 before any routing.
MAX_REQUEST_LINE_BYTES = 8190
MAX_HEADER_FIELD_BYTES = 8190


def parser_problem(status: int, exc: BaseException | None) -> ProblemError:
    """The problem for a request aiohttp's parser refused (it never reaches our middleware)."""
    if isinstance(exc, http_exceptions.LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else MAX_REQUEST_LINE_BYTES
        return ProblemError(status, "request-line-too-long",
                            f"a request line (method, path and query string) or header line longer than "
                            f"{limit} bytes is refused", extra={"max_bytes": limit})
    if isinstance(exc, http_exceptions.BadStatusLine):
        return ProblemError(status, "bad-request-line", "the request line is not 'METHOD /path HTTP/1.1'")
    if isinstance(exc, http_exceptions.InvalidHeader):
        return ProblemError(status, "invalid-header", "a request header is malformed")
    if isinstance(exc, http_exceptions.InvalidURLError):
        return ProblemError(status, "invalid-url", "the request target is not a valid URL")
    if isinstance(exc, http_exceptions.PayloadEncodingError):
        return ProblemError(status, "bad-body-encoding",
                            "the request body does not match its Content-Length or Transfer-Encoding")
    if status >= 500:
        return ProblemError(status, "internal-error", "an internal error occurred; nothing was changed")
    return ProblemError(status, "malformed-http-request", "the HTTP request could not be parsed")


class ProblemRequestHandler(RequestHandler):
    """aiohttp answers what its HTTP parser refuses in `RequestHandler.handle_error`, before any
    middleware, as text/plain; aiohttp offers no hook for it (aio-libs/aiohttp#3287). This
    subclass answers those requests with problem+json like every other error, and with the same
    security headers (control_api.security_headers) as every other response."""

    def __init__(self, manager: web.Server, *, signaling_origin: str | None = None, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.signaling_origin = signaling_origin

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            self.logger.info("refused a malformed request from %s: %s", request.remote, exc)
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        response = problem_response(parser_problem(status, exc))
        apply_security_headers(response.headers, request.path, request.host, request.secure, self.signaling_origin)
        response.force_close()
        return response


class ProblemServer(web.Server):
    def __init__(self, *args: Any, signaling_origin: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signaling_origin = signaling_origin

    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, signaling_origin=self.signaling_origin, **self._kwargs)


class ProblemAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the app's startup: its context is there
        ctx = self.app.get(CONTEXT)
        url = ctx.settings.signaling_url if ctx is not None else None
        return ProblemServer(server.request_handler, request_factory=server.request_factory,
                             handler_cancellation=server.handler_cancellation, loop=server._loop,
                             signaling_origin=signaling_origin(url) if url else None, **server._kwargs)


async def start_site(app: web.Application, host: str, port: int,
                     ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """Run `app` on host:port (port 0 picks a free one), over TLS with `ssl_context` (openvisit/tls.py);
    returns the runner and the bound port."""
    # shutdown_timeout: live visits are ended (and their sockets closed) in on_shutdown; what
    # is still open after this is cut, so SIGTERM finishes within seconds.
    runner = ProblemAppRunner(app, access_log=logging.getLogger("openvisit.access"),
                              shutdown_timeout=SHUTDOWN_TIMEOUT, max_line_size=MAX_REQUEST_LINE_BYTES,
                              max_field_size=MAX_HEADER_FIELD_BYTES)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    addresses = runner.addresses  # public: the bound (host, port, ...) of each listening socket
    bound = addresses[0][1] if addresses else port
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
