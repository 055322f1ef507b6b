"""A standalone media node: the SFU and signaling in their own process (`openvisit sfu`).

It trusts the control plane's Ed25519 public key (fetched once at start) and reports visit
events to the control API over HTTP with the media secret. Officer commands reach it only when
it is embedded (`openvisit serve`) until the Redis command bus lands; see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from openvisit.join_tokens import JoinTokenVerifier
from openvisit.keys import load_public_key
from sfu.aiortc_adapter import restrict_host_candidates, restrict_udp_ports
from sfu.events import ControlApiEventSink, VisitEventSink
from sfu.metrics import SfuCollector
from sfu.recording.storage import RecordingStorage
from sfu.room import DEFAULT_MEDIA_TIMEOUT
from sfu.service import Sfu
from signaling.server import create_signaling_app


def real_now() -> datetime:
    return datetime.now(UTC)


async def fetch_verifier(control_url: str) -> JoinTokenVerifier:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, \
            http.get(control_url.rstrip("/") + "/v1/media/public-key") as resp:
        resp.raise_for_status()
        body = await resp.json()
    return JoinTokenVerifier(load_public_key(body["public_key_pem"]))


def create_media_node_app(verifier: JoinTokenVerifier, sink: VisitEventSink, *,
                          now: Callable[[], datetime] = real_now, ice_servers: list[dict[str, object]] | None = None,
                          addresses: list[str] | None = None, udp_ports: tuple[int, int] | None = None,
                          media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
                          recordings: RecordingStorage | None = None) -> tuple[web.Application, Sfu]:
    if addresses:
        restrict_host_candidates(addresses)
    if udp_ports:
        restrict_udp_ports(*udp_ports)
    sfu = Sfu(sink, now, ice_servers=ice_servers or [], media_timeout=media_timeout, recordings=recordings)
    app = create_signaling_app(sfu, verifier, now)
    recovery: list[asyncio.Task[int]] = []

    async def startup(_app: web.Application) -> None:
        recovery.append(asyncio.create_task(sfu.recover_recordings()))  # R1: orphans of a crash, in the background

    async def shutdown(_app: web.Application) -> None:
        for task in recovery:
            task.cancel()
        await sfu.close()

    async def health(_request: web.Request) -> web.Response:
        """The node's recordings folder, free space, threshold and whether new recordings start."""
        return web.json_response(sfu.health())

    registry = CollectorRegistry()
    registry.register(SfuCollector(sfu))

    async def metrics(_request: web.Request) -> web.Response:  # incl. recordings failed/refused/recovered
        return web.Response(body=generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.router.add_get("/v1/health", health)
    app.router.add_get("/metrics", metrics)
    return app, sfu


async def media_node_from_control(control_url: str, media_secret: str, **kwargs: object) -> tuple[web.Application, Sfu]:
    verifier = await fetch_verifier(control_url)
    return create_media_node_app(verifier, ControlApiEventSink(control_url, media_secret), **kwargs)  # type: ignore[arg-type]
