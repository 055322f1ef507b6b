"""Presence: who is really there, measured from media arriving (S5, S6, M8).

Connected time, which decides the outcome and the money, is the time both parties' media flows
inside the visit: a frozen or silent client is not connected (S6, M8). A party whose media
stopped for `stall_seconds` is a frozen or vanished client whose socket may still be open: the
room drops it, so the other side is told and the party can rejoin (S5). Every look is at a time
passed in (the room's loop clock), so this is tested without media.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

DEFAULT_STALL_SECONDS = 4.0  # a participant whose media stops this long is dropped (a frozen client, S5)
FLOWING_WINDOW = 1.0  # a party counts as connected while its media arrived within this (Opus: every 20 ms)
MAX_STEP = 1.0  # one look adds at most this much connected time (a stalled loop is not a visit)


class Party(Protocol):
    last_media: float | None  # when its media was last seen arriving (the room also sets it for lobby frames)
    frames_seen: int  # what `frames_published` said at the last look

    def frames_published(self) -> int: ...


class Presence:
    def __init__(self, stall_seconds: float = DEFAULT_STALL_SECONDS) -> None:
        self.stall_seconds = stall_seconds
        self._connected_seconds = 0.0
        self._last_look: float | None = None

    @property
    def connected_seconds(self) -> float:
        """Both parties' media flowing inside the visit, so far."""
        return self._connected_seconds

    def look(self, parties: Sequence[Party], t: float, *, media_open: bool) -> None:
        """At time `t`: note whose media arrived since the last look, and count the time since then
        as connected if both parties' media flows and the visit's media is open (S1)."""
        for party in parties:
            frames = party.frames_published()
            if frames != party.frames_seen:
                party.frames_seen = frames
                party.last_media = t
        last, self._last_look = self._last_look, t
        flowing = [p for p in parties if p.last_media is not None and t - p.last_media <= FLOWING_WINDOW]
        if last is not None and len(flowing) == 2 and media_open:
            self._connected_seconds += min(t - last, MAX_STEP)

    def stalled(self, party: Party, t: float) -> float | None:
        """How long ago the party's media stopped, if `stall_seconds` or more at `t` (S5), else None."""
        if party.last_media is not None and t - party.last_media >= self.stall_seconds:
            return t - party.last_media
        return None
