"""The SFU as a whole: its rooms, created from the first valid join token of a visit.

This is also the in-process implementation of the command seam (open a visit's room implicitly
on first join, `disconnect` on an officer's command); a Redis-backed implementation for several
SFU workers exposes the same methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from openvisit.join_tokens import JoinClaims
from sfu.events import VisitEventSink
from sfu.room import DEFAULT_WARNINGS, DisconnectReason, Room


class Sfu:
    def __init__(self, events: VisitEventSink, now: Callable[[], datetime], *,
                 ice_servers: Sequence[dict[str, Any]] = (), warnings: Sequence[int] = DEFAULT_WARNINGS) -> None:
        self.events = events
        self.now = now
        self.ice_servers = ice_servers
        self.warnings = warnings
        self.rooms: dict[str, Room] = {}
        self.ended: set[str] = set()  # visits that ended here: a late join must not reopen them (S2)

    def room_for(self, claims: JoinClaims) -> Room | None:
        if claims.visit_id in self.ended:
            return None
        room = self.rooms.get(claims.visit_id)
        if room is None:
            room = Room(claims.visit_id, privileged=claims.visit_type == "privileged",
                        starts_at=claims.visit_starts_at, ends_at=claims.visit_ends_at, events=self.events,
                        now=self.now, ice_servers=self.ice_servers, warnings=self.warnings, on_closed=self._closed)
            self.rooms[claims.visit_id] = room
        return room

    def _closed(self, room: Room) -> None:
        self.rooms.pop(room.visit_id, None)
        self.ended.add(room.visit_id)

    async def disconnect(self, visit_id: str, reason: DisconnectReason, note: str | None = None) -> bool:
        """S4: end a live visit at once. False when this SFU has no such room."""
        room = self.rooms.get(visit_id)
        if room is None:
            return False
        await room.disconnect(reason, note)
        return True

    async def close(self) -> None:
        for room in list(self.rooms.values()):
            await room.end("failed", message="the media server shut down")
