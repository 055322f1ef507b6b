"""Booking rules over time (A1, A2, A4, A5, A7, B2-B5), as pure functions.

Weekly windows are wall-clock times in the facility's zone; they are expanded to UTC instants
per local date, so a window keeps its local hours across DST changes (A1). Everything else
works on UTC instants. Used both to check one booking and to list every bookable slot, so the
slots shown are exactly the bookings that would be accepted.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SLOT_STEP_MINUTES = 15
ACTIVE_STATUSES = frozenset({"pending_review", "scheduled", "in_progress"})  # hold a kiosk
NOT_COUNTED_FOR_LIMIT = frozenset({"cancelled", "rejected"})  # everything else counts toward A7


@dataclass(frozen=True)
class Window:
    weekday: int  # 0 = Monday
    start_minute: int
    end_minute: int  # up to 1440 (midnight at the end of the day)


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Span) -> bool:
        return self.start <= other.start and other.end <= self.end


@dataclass(frozen=True)
class BookedVisit:
    id: str
    resident_id: str
    start: datetime
    end: datetime
    status: str


@dataclass(frozen=True)
class Policy:
    timezone: str
    booking_horizon_days: int
    min_lead_minutes: int
    weekly_visit_limit: int
    kiosk_count: int


@dataclass(frozen=True)
class Violation:
    rule: str
    slug: str
    message: str


@dataclass
class Schedule:
    """Everything the rules need about one housing unit and one resident."""

    policy: Policy
    windows: Sequence[Window]
    closures: Sequence[Span]
    unit_visits: Sequence[BookedVisit]  # visits holding a kiosk in the resident's housing unit
    resident_visits: Sequence[BookedVisit]  # the resident's visits (any unit), for B3
    ignore_visit_id: str | None = None  # when moving a visit, it does not compete with itself
    _unit_sorted: list[BookedVisit] = field(init=False, repr=False)
    _unit_starts: list[datetime] = field(init=False, repr=False)
    _longest: timedelta = field(init=False, repr=False)
    _resident_active: list[Span] = field(init=False, repr=False)
    _week_counts: dict[date, int] = field(init=False, repr=False)
    zone: ZoneInfo = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.policy.timezone)
        self._unit_sorted = sorted((v for v in self.unit_visits if v.status in ACTIVE_STATUSES
                                    and v.id != self.ignore_visit_id), key=lambda v: v.start)
        self._unit_starts = [v.start for v in self._unit_sorted]
        self._longest = max((v.end - v.start for v in self._unit_sorted), default=timedelta(0))
        self._resident_active = [Span(v.start, v.end) for v in self.resident_visits
                                 if v.status in ACTIVE_STATUSES and v.id != self.ignore_visit_id]
        self._week_counts = {}

    # ---------------------------------------------------------------- A1, A2

    def window_spans(self, first: date, last: date) -> list[Span]:
        """Every window occurrence for local dates first..last, as UTC spans, in order."""
        zone = self.zone
        spans = []
        day = first
        while day <= last:
            for w in self.windows:
                if w.weekday == day.weekday():
                    spans.append(Span(_local(day, w.start_minute, zone), _local(day, w.end_minute, zone)))
            day += timedelta(days=1)
        spans.sort(key=lambda s: s.start)
        return spans

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    # ---------------------------------------------------------------- A4

    def peak_kiosk_use(self, span: Span) -> int:
        """Most visits holding a kiosk at any instant of `span` (checked at every visit boundary)."""
        # Only visits starting within the longest visit's length before `span` can overlap it.
        lo = bisect.bisect_left(self._unit_starts, span.start - self._longest)
        hi = bisect.bisect_left(self._unit_starts, span.end)
        overlapping = [v for v in self._unit_sorted[lo:hi] if v.end > span.start]
        if not overlapping:
            return 0
        events = sorted([(max(v.start, span.start), 1) for v in overlapping] +
                        [(min(v.end, span.end), -1) for v in overlapping], key=lambda e: (e[0], e[1]))
        peak = current = 0
        for _, delta in events:
            current += delta
            peak = max(peak, current)
        return peak

    # ---------------------------------------------------------------- B3

    def week_of(self, instant: datetime) -> Span:
        """The Monday-to-Monday local week holding `instant` (A7 counts per such week)."""
        local_day = self.local_date(instant)
        monday = local_day - timedelta(days=local_day.weekday())
        return Span(_local(monday, 0, self.zone), _local(monday + timedelta(days=7), 0, self.zone))

    def visits_in_week(self, instant: datetime) -> int:
        local_day = self.local_date(instant)
        monday = local_day - timedelta(days=local_day.weekday())
        if monday not in self._week_counts:
            week = self.week_of(instant)
            self._week_counts[monday] = sum(
                1 for v in self.resident_visits if v.status not in NOT_COUNTED_FOR_LIMIT
                and v.id != self.ignore_visit_id and week.start <= v.start < week.end)
        return self._week_counts[monday]

    # ---------------------------------------------------------------- one booking

    def violations(self, span: Span, now: datetime, *, window_spans: Sequence[Span] | None = None) -> list[Violation]:
        """Every rule this visit would break; empty means it can be booked."""
        out: list[Violation] = []
        p = self.policy
        if span.start < now + timedelta(minutes=p.min_lead_minutes):
            out.append(Violation("B5", "too-soon", f"visits must be booked at least {p.min_lead_minutes} minutes "
                                                   "ahead (rule A5)"))
        if span.start > now + timedelta(days=p.booking_horizon_days):
            out.append(Violation("B5", "beyond-horizon", f"visits can be booked at most {p.booking_horizon_days} "
                                                         "days ahead (rule A5)"))
        spans = window_spans if window_spans is not None else self.window_spans(
            self.local_date(span.start) - timedelta(days=1), self.local_date(span.end))
        if not any(w.contains(span) for w in spans):
            out.append(Violation("B2", "outside-visitation-window",
                                 "the visit must lie wholly inside one visitation window of the resident's "
                                 "housing unit (rules A2, B2)"))
        if any(c.overlaps(span) for c in self.closures):
            out.append(Violation("B2", "facility-closed", "the facility is closed for visits then (rule A2)"))
        if any(busy.overlaps(span) for busy in self._resident_active):
            out.append(Violation("B3", "resident-busy", "the resident already has a visit then (rule B3)"))
        if self.visits_in_week(span.start) >= p.weekly_visit_limit:
            out.append(Violation("B3", "weekly-limit-reached", f"the resident already has {p.weekly_visit_limit} "
                                                               "visits that week (rules A7, B3)"))
        if self.peak_kiosk_use(span) >= p.kiosk_count:
            out.append(Violation("B4", "slot-taken", "every kiosk of the housing unit is booked for part of that "
                                                     "time (rules A4, B4)"))
        return out

    # ---------------------------------------------------------------- availability

    def available_slots(self, first: date, last: date, length: timedelta, now: datetime) -> list[Span]:
        """Every start (each window's start, then every 15 minutes) a booking would be accepted at."""
        spans = self.window_spans(first, last)
        slots = []
        step = timedelta(minutes=SLOT_STEP_MINUTES)
        for window in spans:
            start = window.start
            while start + length <= window.end:
                candidate = Span(start, start + length)
                if not self.violations(candidate, now, window_spans=(window,)):
                    slots.append(candidate)
                start += step
        return slots


def _local(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock minute of a date as a UTC instant (24:00 is the next midnight)."""
    extra_days, minute = divmod(minute, 1440)
    local = datetime.combine(day + timedelta(days=extra_days), time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(UTC)


def spans_from(rows: Iterable[tuple[datetime, datetime]]) -> list[Span]:
    return [Span(a, b) for a, b in rows]
