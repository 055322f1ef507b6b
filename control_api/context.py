"""Everything a request handler may use, built once by the application factory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from openvisit.clock import Clock
from openvisit.settings import Settings


class MediaControl(Protocol):
    """Commands into the media plane (in-process: the Sfu; later: a Redis-backed client)."""

    async def disconnect(self, visit_id: str, reason: Literal["conduct", "facility", "technical"],
                         note: str | None = None) -> bool: ...

    def is_live(self, visit_id: str) -> bool: ...


if TYPE_CHECKING:
    from control_api.auth import AccessTokens
    from control_api.payments.gateway import PaymentGateway
    from control_api.services.media_sessions import LeaseWatcher
    from openvisit.join_tokens import JoinTokenSigner


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]  # write transactions (BEGIN IMMEDIATE on SQLite)
    read_sessions: async_sessionmaker[AsyncSession]  # read-only requests
    clock: Clock
    access_tokens: AccessTokens
    join_tokens: JoinTokenSigner
    gateway: PaymentGateway
    media_secret: str
    extra_engines: list[AsyncEngine] = field(default_factory=list)
    media: MediaControl | None = None  # the SFU's command seam, when a media plane is attached
    media_leases: LeaseWatcher | None = None  # notices media nodes that stopped heartbeating (S5, S6)


CONTEXT = web.AppKey("openvisit_context", AppContext)
