"""The system clock, movable in demo and test mode (like Stripe's test clocks).

Every rule that depends on time (lead time, lobby, expiry, deadlines) asks a `Clock` for now,
so an operator can advance time and watch credits expire or deadlines pass end to end. In
production the offset is always zero and cannot be changed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ClockLockedError(Exception):
    """The clock cannot move in production mode."""


class Clock:
    def __init__(self, movable: bool, offset: timedelta = timedelta(0)) -> None:
        self.movable = movable
        self._offset = offset if movable else timedelta(0)

    @property
    def offset(self) -> timedelta:
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    def set_offset(self, offset: timedelta) -> None:
        if not self.movable:
            raise ClockLockedError("the clock only moves in demo or test mode")
        if offset < timedelta(0):
            raise ValueError("the clock never moves backwards")
        self._offset = offset
