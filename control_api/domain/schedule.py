"""Booking rules over time (A1, A2, A4, A5, A7, B2-B5), as pure functions.

Weekly windows are wall-clock times in the facility's zone; they are expanded to UTC instants
per local date, so a window keeps its local hours across DST changes (A1). Everything else
works on UTC instants, as half-open spans [start, end).

One booking is checked by `Schedule.violations` (every broken rule, with its slug); the slot
list (`Schedule.available_slots`) uses the same precomputed data, reduced to sorted disjoint
"blocked" spans, so each candidate costs a binary search. A property test holds the two to the
same answers: the slots shown are exactly the bookings that would be accepted.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SLOT_STEP_MINUTES = 15
ACTIVE_STATUSES = frozenset({"pending_review", "scheduled", "in_progress"})  # hold a kiosk and the resident
# Everything else counts toward the weekly limit (A7), except what never took place through no
# choice of the resident or the visitor: cancelled, rejected, or failed by the system (M6).
NOT_COUNTED_FOR_LIMIT = frozenset({"cancelled", "rejected", "failed"})


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


class SpanSet:
    """Sorted, disjoint spans with an O(log n) overlap test."""

    __slots__ = ("_ends", "_starts", "spans")

    def __init__(self, spans: Iterable[Span]) -> None:
        merged: list[Span] = []
        for s in sorted((s for s in spans if s.start < s.end), key=lambda s: s.start):
            if merged and s.start <= merged[-1].end:
                if s.end > merged[-1].end:
                    merged[-1] = Span(merged[-1].start, s.end)
            else:
                merged.append(s)
        self.spans = merged
        self._starts = [s.start for s in merged]
        self._ends = [s.end for s in merged]

    def overlaps(self, span: Span) -> bool:
        # The first span ending after span.start is the only candidate (they are disjoint and sorted).
        i = bisect.bisect_right(self._ends, span.start)
        return i < len(self._starts) and self._starts[i] < span.end

    def __len__(self) -> int:
        return len(self.spans)


def saturated_spans(visits: Iterable[Span], capacity: int) -> list[Span]:
    """A4: the spans during which at least `capacity` visits hold a kiosk at once.

    A new visit fits at every minute exactly when it overlaps none of them. Ends are processed
    before starts at the same instant: back-to-back visits do not share a kiosk minute.
    """
    events = sorted([(v.start, 1) for v in visits] + [(v.end, -1) for v in visits], key=lambda e: (e[0], e[1]))
    out: list[Span] = []
    current = 0
    opened: datetime | None = None
    for instant, delta in events:
        current += delta
        if delta > 0 and current == capacity:
            opened = instant
        elif delta < 0 and current == capacity - 1 and opened is not None:
            if instant > opened:
                out.append(Span(opened, instant))
            opened = None
    return out


@dataclass
class Schedule:
    """Everything the rules need about one housing unit and one resident."""

    policy: Policy
    windows: Sequence[Window]
    closures: Sequence[Span]
    unit_visits: Sequence[BookedVisit]  # visits holding a kiosk in the resident's housing unit
    resident_visits: Sequence[BookedVisit]  # the resident's visits (any unit), for B3
    ignore_visit_id: str | None = None  # when moving a visit, it does not compete with itself
    zone: ZoneInfo = field(init=False, repr=False)
    _closed: SpanSet = field(init=False, repr=False)
    _resident_busy: SpanSet = field(init=False, repr=False)
    _full: SpanSet = field(init=False, repr=False)
    _blocked: SpanSet = field(init=False, repr=False)
    _week_counts: dict[date, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.zone = ZoneInfo(self.policy.timezone)
        holding = [Span(v.start, v.end) for v in self.unit_visits
                   if v.status in ACTIVE_STATUSES and v.id != self.ignore_visit_id]
        self._closed = SpanSet(self.closures)
        self._resident_busy = SpanSet(Span(v.start, v.end) for v in self.resident_visits
                                      if v.status in ACTIVE_STATUSES and v.id != self.ignore_visit_id)
        if self.policy.kiosk_count <= 0:  # a unit without kiosks holds no visit at all
            self._full = SpanSet([Span(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))])
        else:
            self._full = SpanSet(saturated_spans(holding, self.policy.kiosk_count))
        self._blocked = SpanSet([*self._closed.spans, *self._resident_busy.spans, *self._full.spans])
        self._week_counts = {}

    # ---------------------------------------------------------------- A1, A2

    def window_spans(self, first: date, last: date) -> list[Span]:
        """Every window occurrence for local dates first..last, as UTC spans, in order."""
        zone = self.zone
        by_day: dict[int, list[Window]] = {}
        for w in self.windows:
            by_day.setdefault(w.weekday, []).append(w)
        spans = []
        day = first
        while day <= last:
            for w in by_day.get(day.weekday(), ()):
                span = Span(_local(day, w.start_minute, zone), _local(day, w.end_minute, zone))
                if span.start < span.end:  # a window wholly inside a DST gap does not occur that day
                    spans.append(span)
            day += timedelta(days=1)
        spans.sort(key=lambda s: s.start)
        return spans

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()

    # ---------------------------------------------------------------- B3

    def week_of(self, instant: datetime) -> Span:
        """The local Monday 00:00 to next Monday 00:00 week holding `instant` (A7 counts per week)."""
        local_day = self.local_date(instant)
        monday = local_day - timedelta(days=local_day.weekday())
        return Span(_local(monday, 0, self.zone), _local(monday + timedelta(days=7), 0, self.zone))

    def visits_in_week(self, instant: datetime) -> int:
        """Visits of the resident counted toward the weekly limit in `instant`'s local week."""
        local_day = self.local_date(instant)
        monday = local_day - timedelta(days=local_day.weekday())
        if monday not in self._week_counts:
            week = self.week_of(instant)
            self._week_counts[monday] = sum(
                1 for v in self.resident_visits if v.status not in NOT_COUNTED_FOR_LIMIT
                and v.id != self.ignore_visit_id and week.start <= v.start < week.end)
        return self._week_counts[monday]

    # ---------------------------------------------------------------- A5

    def earliest_start(self, now: datetime) -> datetime:
        return now + timedelta(minutes=self.policy.min_lead_minutes)

    def latest_start(self, now: datetime) -> datetime:
        return now + timedelta(days=self.policy.booking_horizon_days)

    # ---------------------------------------------------------------- one booking

    def violations(self, span: Span, now: datetime) -> list[Violation]:
        """Every rule this visit would break, most fundamental first; empty means it can be booked."""
        out: list[Violation] = []
        p = self.policy
        if span.start < self.earliest_start(now):
            out.append(Violation("B5", "too-soon", f"visits must be booked at least {p.min_lead_minutes} minutes "
                                                   "ahead (rules A5, B5)"))
        if span.start > self.latest_start(now):
            out.append(Violation("B5", "beyond-horizon", f"visits can be booked at most {p.booking_horizon_days} "
                                                         "days ahead (rules A5, B5)"))
        windows = self.window_spans(self.local_date(span.start) - timedelta(days=1), self.local_date(span.end))
        if not any(w.contains(span) for w in windows):
            out.append(Violation("B2", "outside-visitation-window",
                                 "the visit must lie wholly inside one visitation window of the resident's "
                                 "housing unit, in the facility's local time (rules A1, A2, B2)"))
        if self._closed.overlaps(span):
            out.append(Violation("B2", "facility-closed", "the facility is closed for visits then (rules A2, B2)"))
        if self._resident_busy.overlaps(span):
            out.append(Violation("B3", "resident-busy", "the resident already has a visit then (rule B3)"))
        if self.visits_in_week(span.start) >= p.weekly_visit_limit:
            out.append(Violation("B3", "weekly-limit-reached", f"the resident already has {p.weekly_visit_limit} "
                                                               "visits that week, Monday to Sunday (rules A7, B3)"))
        if self._full.overlaps(span):
            out.append(Violation("B4", "slot-taken", "every kiosk of the housing unit is booked for part of that "
                                                     "time (rules A4, B4)"))
        return out

    # ---------------------------------------------------------------- availability

    def available_slots(self, first: date, last: date, length: timedelta, now: datetime) -> list[Span]:
        """Every start (each window's start, then every 15 minutes) a booking would be accepted at.

        Same rules as `violations`, evaluated per window: a window lies within one local day, hence
        one week (A7), and each candidate is one binary search in the blocked spans.
        """
        earliest, latest = self.earliest_start(now), self.latest_start(now)
        limit = self.policy.weekly_visit_limit
        step = timedelta(minutes=SLOT_STEP_MINUTES)
        blocked = self._blocked
        slots: dict[datetime, Span] = {}  # overlapping windows must not list a start twice
        for window in self.window_spans(first, last):
            if window.end - length < earliest or window.start > latest:
                continue
            if self.visits_in_week(window.start) >= limit:
                continue
            start = window.start
            while start + length <= window.end and start <= latest:
                if start >= earliest:
                    candidate = Span(start, start + length)
                    if not blocked.overlaps(candidate):
                        slots[start] = candidate
                start += step
        return [slots[start] for start in sorted(slots)]


def _local(day: date, minute: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock minute of a date as a UTC instant (24:00 is the next midnight), A1.

    A repeated wall time (clocks going back) means its first occurrence. A wall time that never
    happens (clocks going forward) means the instant the clocks jump past it, the first moment the
    wall clock shows at least that time: 02:30 on a spring-forward night is 03:00 daylight time.
    """
    extra_days, minute = divmod(minute, 1440)
    naive = datetime.combine(day + timedelta(days=extra_days), time(minute // 60, minute % 60))
    instant = naive.replace(tzinfo=zone).astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    for later in range(1, 24 * 60):  # in a gap: the first wall minute after it that exists
        probe = naive + timedelta(minutes=later)
        instant = probe.replace(tzinfo=zone).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == probe:
            return instant
    raise ValueError(f"no local time at or after {naive} in {zone}")  # pragma: no cover
