"""S1: when a visit can be joined. One rule for joining, monitoring, the officers' live list and
kiosk check-in (S6): from the lobby opening (`lobby_minutes` before the start) until the
scheduled end, the end itself excluded (S2)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


class Position(enum.Enum):
    """Where an instant lies relative to a visit's join window."""

    BEFORE = "before"  # the lobby has not opened yet
    OPEN = "open"
    AFTER = "after"  # the scheduled end has passed


@dataclass(frozen=True)
class JoinWindow:
    """[opens_at, ends_at): the lobby opening to the scheduled end."""

    opens_at: datetime
    ends_at: datetime

    @classmethod
    def of(cls, starts_at: datetime, ends_at: datetime, lobby_minutes: int) -> JoinWindow:
        return cls(opens_at=starts_at - timedelta(minutes=lobby_minutes), ends_at=ends_at)

    def position(self, now: datetime) -> Position:
        if now < self.opens_at:
            return Position.BEFORE
        if now >= self.ends_at:
            return Position.AFTER
        return Position.OPEN

    def is_open(self, now: datetime) -> bool:
        return self.position(now) is Position.OPEN


def latest_start_open_at(now: datetime, lobby_minutes: int) -> datetime:
    """The latest start whose lobby is open at `now` (for a query: starts_at <= this and
    ends_at > now select exactly the visits whose window is open)."""
    return now + timedelta(minutes=lobby_minutes)
