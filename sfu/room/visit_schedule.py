"""VisitSchedule: a visit's times as the room enforces them (S1, S2, S3), on a clock passed in.

S1: participants may wait in the lobby, but media flows only from the start. S2: the visit ends
at its scheduled end, to the second, however late anyone joined. S3: warnings before the end
(120 and 30 seconds by default), to everyone present when a threshold is crossed and to a
participant who joins already inside one. The clock is a `now` callable re-read at every look,
so it may be a movable test clock; nothing here sleeps or reads the system time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

DEFAULT_WARNINGS = (120, 30)  # rule S3: seconds before the end


class VisitSchedule:
    def __init__(self, starts_at: datetime, ends_at: datetime, now: Callable[[], datetime],
                 warnings: Sequence[int] = DEFAULT_WARNINGS) -> None:
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.now = now
        self.warnings = sorted(warnings, reverse=True)
        self._pending = list(self.warnings)  # thresholds not announced yet, largest first
        self.media_open = False  # S1: the start was seen (latched: a clock never moves back)

    def remaining(self) -> float:
        """Seconds to the scheduled end (S2: the end is over at 0 or below)."""
        return (self.ends_at - self.now()).total_seconds()

    def has_started(self) -> bool:
        return self.now() >= self.starts_at

    def open_media(self) -> bool:
        """S1: True once the visit has started, and `media_open` from then on (the clock is only
        read until then)."""
        if not self.media_open and self.has_started():
            self.media_open = True
        return self.media_open

    def warning_due(self, remaining: float) -> int | None:
        """S3: the seconds left to announce now that `remaining` crossed thresholds not announced
        yet (several crossed at once: one warning), else None. Each threshold is announced once."""
        pending = self._pending
        if not pending or remaining > pending[0]:
            return None
        while pending and remaining <= pending[0]:
            pending.pop(0)
        return round(remaining)

    def warning_on_join(self, remaining: float) -> int | None:
        """S3: the warning a participant who joins inside a threshold gets at once, else None."""
        if any(remaining <= threshold for threshold in self.warnings):
            return max(0, int(remaining))
        return None

    def next_look(self, remaining: float, tick: float) -> float:
        """Seconds to sleep before looking again: at the next threshold or the end, at most `tick`."""
        next_event = min([remaining, *[remaining - t for t in self._pending]])
        return min(max(next_event, 0.01), tick)
