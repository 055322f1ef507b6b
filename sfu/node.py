"""A standalone media node: the SFU and signaling in their own process (`openvisit sfu`).

It trusts the control plane's Ed25519 public key (fetched once at start) and reports visit
events to the control API over HTTP with the media secret, through its outbox (sfu/outbox.py):
each event is on the node's disk before the room goes on, and is delivered once the control API
takes it, however long it is away. Used join tokens and resume tokens live in the node's state
store next to the outbox (sfu/node_state.py), so participants rejoin (S5) while the control API
is down, and after a node restart. Officer commands reach it only when
it is embedded (`openvisit serve`) until the Redis command bus lands; see docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from openvisit.forwarded import TrustedProxies, forwarded_middleware
from openvisit.health import CheckResult, Readiness, install_health, recordings_folder_check
from openvisit.join_tokens import JoinTokenVerifier
from openvisit.keys import load_public_key
from sfu.aiortc_adapter import announce_host_address, restrict_host_candidates, restrict_udp_ports
from sfu.events import HttpDelivery, VisitEventSink
from sfu.heartbeat import FollowingClock, Heartbeat, Transport, http_transport
from sfu.metrics import SfuCollector, register_process_metrics
from sfu.node_state import NodeState, state_file_next_to
from sfu.outbox import Outbox, OutboxCollector
from sfu.recording.storage import LocalFolderStorage, RecordingStorage
from sfu.room import DEFAULT_MEDIA_TIMEOUT, DEFAULT_STALL_SECONDS
from sfu.service import Sfu
from signaling.server import create_signaling_app

log = logging.getLogger(__name__)
OUTBOX_FLUSH_SECONDS = 1.5
DELIVERY_TIMEOUT = 120.0  # at shutdown: the whole shutdown must finish within 5 s; the rest stays on disk


def real_now() -> datetime:
    return datetime.now(UTC)


async def fetch_verifier(control_url: str, cache: Path | None = None) -> JoinTokenVerifier:
    """The control plane's public key. With `cache`, the last key fetched is kept on disk and used
    when the control API does not answer, so a node restarted during an API outage still starts,
    replays its outbox and lets participants rejoin (S5)."""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http, \
                http.get(control_url.rstrip("/") + "/v1/media/public-key") as resp:
            resp.raise_for_status()
            pem: str = (await resp.json())["public_key_pem"]
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        cached = _read_cached_key(cache) if cache is not None else None
        if cached is None:
            raise
        log.warning("the control API does not answer (%s): using the public key cached at %s", exc, cache)
        pem = cached
    else:
        if cache is not None:
            _cache_key(cache, pem)
    return JoinTokenVerifier(load_public_key(pem))


def _read_cached_key(cache: Path) -> str | None:
    return cache.read_text() if cache.is_file() else None


def _cache_key(cache: Path, pem: str) -> None:
    if _read_cached_key(cache) == pem:
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    staged = cache.with_name(cache.name + ".partial")
    staged.write_text(pem)
    os.replace(staged, cache)  # atomic: a crash leaves the old key or the new one


def create_media_node_app(verifier: JoinTokenVerifier, sink: VisitEventSink, *,
                          now: Callable[[], datetime] = real_now, ice_servers: list[dict[str, object]] | None = None,
                          addresses: list[str] | None = None, udp_ports: tuple[int, int] | None = None,
                          announced_address: str | None = None,
                          media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
                          recordings: RecordingStorage | None = None, stall_seconds: float = DEFAULT_STALL_SECONDS,
                          heartbeat: Transport | None = None, heartbeat_seconds: float = 2.0,
                          clock: FollowingClock | None = None,
                          state: NodeState | None = None,
                          trusted_proxies: list[str] | None = None) -> tuple[web.Application, Sfu]:
    """The node's app. With a heartbeat transport it renews its lease at the control plane (S5, S6)
    and, given a `FollowingClock` (whose `now` it then uses), follows the control plane's test clock.
    An `Outbox` sink and the `state` store are closed by the app's shutdown. Behind a reverse proxy,
    `trusted_proxies` say whose forwarded headers name the client (refused-join audit, issue 14);
    `/livez` and `/readyz` report the node's health (openvisit/health.py)."""
    if addresses:
        restrict_host_candidates(addresses)
    if udp_ports:
        restrict_udp_ports(*udp_ports)
    if announced_address:
        announce_host_address(announced_address)  # behind a 1:1 NAT: candidates carry the public address
    if clock is not None:
        now = clock.now
    sfu = Sfu(sink, now, ice_servers=ice_servers or [], media_timeout=media_timeout, recordings=recordings,
              stall_seconds=stall_seconds, state=state)
    app = create_signaling_app(sfu, verifier, now)
    if trusted_proxies:
        app.middlewares.insert(0, forwarded_middleware(TrustedProxies(trusted_proxies)))
    registry = CollectorRegistry()
    register_process_metrics(registry)  # this process's CPU and memory (the node is a process of its own)
    registry.register(SfuCollector(sfu))
    if isinstance(sink, Outbox):
        registry.register(OutboxCollector(sink))

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    app.router.add_get("/metrics", metrics)  # the SFU's (recordings failed/refused/recovered included) and the outbox's
    beats = Heartbeat(sfu, heartbeat, interval=heartbeat_seconds, clock=clock) if heartbeat is not None else None
    recovery: list[asyncio.Task[int]] = []

    async def startup(_app: web.Application) -> None:
        if beats is not None:
            await beats.beat()  # learn the clock before the first room opens
            beats.start()
        recovery.append(asyncio.create_task(sfu.recover_recordings()))  # R1: orphans of a crash, in the background

    async def shutdown(_app: web.Application) -> None:
        """Within the 5 s a shutdown has: end the rooms (their `ended` goes to the outbox), try to
        deliver for a moment, leave the rest on disk for the next start."""
        for task in recovery:
            task.cancel()
        try:
            if beats is not None:
                await beats.stop()
            await sfu.close()
        finally:
            if isinstance(sink, Outbox):
                await sink.close(OUTBOX_FLUSH_SECONDS)
            await sfu.state.close()

    async def health(_request: web.Request) -> web.Response:
        """The node's recordings folder, free space, threshold and whether new recordings start."""
        return web.json_response(sfu.health())

    accepting: list[bool] = [False]  # between startup and shutdown: joins are taken

    async def media() -> CheckResult:
        if not accepting[0]:
            return CheckResult(False, "the media node is starting or shutting down")
        return CheckResult(True, f"accepting visits ({len(sfu.rooms)} live)")

    async def opened(_app: web.Application) -> None:
        accepting[0] = True

    async def closing(_app: web.Application) -> None:
        accepting[0] = False

    readiness = Readiness()
    readiness.add("media", media)
    if isinstance(recordings, LocalFolderStorage):
        readiness.add("recordings", recordings_folder_check(recordings.root, recordings.min_free_bytes),
                      cache_seconds=1.5)
    install_health(app, readiness)  # the TURN relay check is added to app[READINESS] the same way
    app.on_startup.append(startup)
    app.on_startup.append(opened)
    app.on_shutdown.insert(0, closing)
    app.on_shutdown.append(shutdown)
    app.router.add_get("/v1/health", health)
    return app, sfu


async def media_node_from_control(control_url: str, media_secret: str, *, outbox_path: Path,
                                  **kwargs: Any) -> tuple[web.Application, Sfu]:
    """A node reporting to `control_url`: its outbox (replaying what an earlier run left) and its
    state store are opened here and closed by the app's shutdown."""
    verifier = await fetch_verifier(control_url, cache=outbox_path.with_name("control-public-key.pem"))
    # The control plane re-hashes a recording's files before it acknowledges `recording_closed`
    # (R2): long recordings need more than the default 10 s per attempt.
    outbox = await Outbox.open(outbox_path, HttpDelivery(control_url, media_secret, timeout=DELIVERY_TIMEOUT),
                               name="node", attempt_timeout=DELIVERY_TIMEOUT + 5)
    state = await NodeState.open(state_file_next_to(outbox_path), real_now())
    return create_media_node_app(verifier, outbox, heartbeat=http_transport(control_url, media_secret),
                                 clock=FollowingClock(), state=state, **kwargs)
