"""The seam between the SFU and the control plane: visit events out, one small interface.

`VisitEventSink` is what a room reports to. A media node's sink is its outbox (`sfu/outbox.py`):
the event is on disk before `report` returns, and a `Delivery` hands it to the control plane
until acknowledged, over HTTP for a standalone node (`HttpDelivery`, `/v1/internal/media-events`
with the media secret) or by a direct call for the embedded media plane
(`control_api/media_bridge.py: ControlPlaneEventSink`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import aiohttp

log = logging.getLogger(__name__)
EventKind = Literal["participant_joined", "participant_left", "started", "ended",
                    "monitor_joined", "monitor_left", "privilege_refused", "join_refused", "recording_closed",
                    "recording_failed"]


@dataclass(frozen=True)
class VisitEvent:
    visit_id: str
    kind: EventKind
    occurred_at: datetime
    participant: Literal["visitor", "resident"] | None = None
    reason: Literal["completed", "disconnected", "failed"] | None = None
    disconnect_reason: Literal["conduct", "facility", "technical"] | None = None
    connected_seconds: int | None = None
    detail: str | None = None
    actor: str | None = None  # the officer of a monitor event; what was refused on a privileged visit
    manifest: dict[str, Any] | None = None  # recording_closed: the recorder's (unsigned) manifest
    source: str | None = None  # join_refused: the client's address (unauthenticated attempts are kept apart)
    verified: bool | None = None  # join_refused: whether `actor` was proven (a valid token) or only claimed
    session_id: str | None = None  # the room (one per visit per node boot) that saw it
    node_id: str | None = None  # the media node that reported it (set by the node)
    event_id: str = field(default_factory=lambda: f"sfu-{uuid.uuid4().hex}")

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in asdict(self).items() if v is not None}
        body["occurred_at"] = self.occurred_at.isoformat()
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> VisitEvent:
        """The inverse of `to_json` (an outbox stores events as JSON)."""
        fields = dict(body)
        fields["occurred_at"] = datetime.fromisoformat(fields["occurred_at"])
        return cls(**fields)


class VisitEventSink(Protocol):
    async def report(self, event: VisitEvent) -> None: ...


class DeliveryRefused(Exception):
    """The control plane refused the event and always will (validation, unknown visit): the outbox
    moves it to its dead letters instead of retrying it forever."""


class DeliveryFailed(Exception):
    """The event was not taken this time (unreachable, timeout, 5xx, database down): retry later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Delivery(Protocol):
    """Hands one event to the control plane. Returns only once it was applied and committed there;
    raises `DeliveryRefused` for an event that can never be taken, anything else to be retried."""

    async def deliver(self, event: VisitEvent) -> None: ...

    async def close(self) -> None: ...


# Client errors that are about the moment or the node's configuration, not the event: retried.
# 401/403: a wrong or rotated media secret (fixed by an operator, then everything goes through).
RETRIED_CLIENT_ERRORS = frozenset({401, 403, 408, 425, 429})


class HttpDelivery:
    """POST /v1/internal/media-events with the media secret. 2xx is the acknowledgement (the
    control API answers after its transaction committed; a repeated event id answers
    `duplicate: true`). 4xx (validation, unknown visit) is refused for good; 5xx, 503 with
    Retry-After, connection errors and timeouts are retried by the outbox."""

    def __init__(self, base_url: str, media_secret: str, *, timeout: float = 10.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/internal/media-events"
        self.headers = {"Authorization": f"Bearer {media_secret}"}
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def deliver(self, event: VisitEvent) -> None:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(headers=self.headers,
                                               timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._http.post(self.url, json=event.to_json()) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return
                text = (await resp.text())[:300]
                if 400 <= resp.status < 500 and resp.status not in RETRIED_CLIENT_ERRORS:
                    raise DeliveryRefused(f"HTTP {resp.status}: {text}")
                raise DeliveryFailed(f"HTTP {resp.status}: {text}",
                                     retry_after=_seconds(resp.headers.get("Retry-After")))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None
