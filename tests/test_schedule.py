"""Pure schedule rules: DST (A1), windows (A2), capacity (A4), lead/horizon (A5), limits (B3), and
the property that the slot list is exactly the set of bookings the rules accept."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from control_api.domain.schedule import BookedVisit, Policy, Schedule, Span, SpanSet, Window, saturated_spans

NY = "America/New_York"


def schedule(*, limit: int = 10, kiosks: int = 1, windows: list[Window] | None = None,
             closures: list[Span] | None = None, unit: list[BookedVisit] | None = None,
             resident: list[BookedVisit] | None = None) -> Schedule:
    policy = Policy(timezone=NY, booking_horizon_days=60, min_lead_minutes=0, weekly_visit_limit=limit,
                    kiosk_count=kiosks)
    return Schedule(policy=policy, windows=windows if windows is not None else [Window(6, 8 * 60, 11 * 60)],
                    closures=closures or [], unit_visits=unit or [], resident_visits=resident or [])


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_a1_windows_keep_local_hours_across_dst() -> None:
    s = schedule()
    # Sunday 2027-03-07 is EST (UTC-5); Sunday 2027-03-14 is the day DST starts (EDT, UTC-4).
    before, after = s.window_spans(date(2027, 3, 7), date(2027, 3, 14))
    assert (before.start, before.end) == (utc(2027, 3, 7, 13), utc(2027, 3, 7, 16))
    assert (after.start, after.end) == (utc(2027, 3, 14, 12), utc(2027, 3, 14, 15))
    # and back in November: Sunday 2027-10-31 is EDT, Sunday 2027-11-07 the day DST ends (EST again)
    october, november = s.window_spans(date(2027, 10, 31), date(2027, 11, 7))
    assert (october.start, october.end) == (utc(2027, 10, 31, 12), utc(2027, 10, 31, 15))
    assert (november.start, november.end) == (utc(2027, 11, 7, 13), utc(2027, 11, 7, 16))


def test_a1_windows_around_the_changes_themselves() -> None:
    def spans(day: date, start: int, end: int) -> list[Span]:
        return schedule(windows=[Window(6, start, end)]).window_spans(day, day)

    spring, autumn = date(2027, 3, 14), date(2027, 11, 7)
    # 01:30-04:00 on the spring-forward night lasts 90 minutes: 01:30 EST to 04:00 EDT.
    assert spans(spring, 90, 240) == [Span(utc(2027, 3, 14, 6, 30), utc(2027, 3, 14, 8))]
    # 02:30 never happens that night; a window from it opens when the clocks jump (03:00 EDT).
    assert spans(spring, 150, 240) == [Span(utc(2027, 3, 14, 7), utc(2027, 3, 14, 8))]
    assert spans(spring, 150, 175) == []  # wholly inside the gap: no window that day
    # 01:00-02:00 on the fall-back night holds both 01:xx hours: two hours long.
    assert spans(autumn, 60, 120) == [Span(utc(2027, 11, 7, 5), utc(2027, 11, 7, 7))]
    # A window ending at midnight (24:00) ends at the next local midnight.
    assert spans(spring, 22 * 60, 1440) == [Span(utc(2027, 3, 15, 2), utc(2027, 3, 15, 4))]


def test_b2_a_visit_crossing_the_window_end_or_a_closure_is_refused() -> None:
    now = utc(2027, 3, 1)
    s = schedule(closures=[Span(utc(2027, 3, 14, 12), utc(2027, 3, 14, 13))])
    slugs = {v.slug for v in s.violations(Span(utc(2027, 3, 14, 14, 45), utc(2027, 3, 14, 15, 15)), now)}
    assert "outside-visitation-window" in slugs
    slugs = {v.slug for v in s.violations(Span(utc(2027, 3, 14, 12, 30), utc(2027, 3, 14, 13)), now)}
    assert slugs == {"facility-closed"}
    assert s.violations(Span(utc(2027, 3, 14, 13), utc(2027, 3, 14, 13, 30)), now) == []


def test_b3_the_resident_is_busy_during_an_active_visit_in_any_unit() -> None:
    now = utc(2027, 1, 1)
    windows = [Window(d, 0, 1440) for d in range(7)]
    busy = BookedVisit("a", "r", utc(2027, 1, 5, 15), utc(2027, 1, 5, 15, 30), "scheduled")
    s = schedule(windows=windows, resident=[busy])
    assert {v.slug for v in s.violations(Span(utc(2027, 1, 5, 15, 15), utc(2027, 1, 5, 15, 45)), now)} == {
        "resident-busy"}
    assert s.violations(Span(utc(2027, 1, 5, 15, 30), utc(2027, 1, 5, 16)), now) == []  # back to back is fine
    done = BookedVisit("a", "r", busy.start, busy.end, "cancelled")
    assert schedule(windows=windows, resident=[done]).violations(Span(busy.start, busy.end), now) == []
    moving = Schedule(policy=s.policy, windows=windows, closures=[], unit_visits=[busy], resident_visits=[busy],
                      ignore_visit_id="a")
    assert moving.violations(Span(busy.start, busy.end), now) == []  # a moved visit does not block itself


def test_a4_a_unit_without_kiosks_takes_no_visit() -> None:
    s = schedule(windows=[Window(d, 0, 1440) for d in range(7)], kiosks=0)
    assert {v.slug for v in s.violations(Span(utc(2027, 1, 5, 15), utc(2027, 1, 5, 15, 30)), utc(2027, 1, 1))} == {
        "slot-taken"}
    assert s.available_slots(date(2027, 1, 5), date(2027, 1, 5), timedelta(minutes=30), utc(2027, 1, 1)) == []


def test_a5_lead_and_horizon() -> None:
    s = Schedule(policy=Policy(NY, 7, 120, 10, 1), windows=[Window(d, 0, 1440) for d in range(7)], closures=[],
                 unit_visits=[], resident_visits=[])
    now = utc(2027, 1, 1, 12)
    assert {v.slug for v in s.violations(Span(now + timedelta(minutes=60), now + timedelta(minutes=90)), now)} == {
        "too-soon"}
    assert {v.slug for v in s.violations(Span(now + timedelta(days=8), now + timedelta(days=8, minutes=30)), now)} == {
        "beyond-horizon"}


def test_b3_weekly_limit_counts_the_local_monday_to_sunday_week() -> None:
    windows = [Window(d, 0, 1440) for d in range(7)]
    # Monday 2027-01-04 00:30 New York is 05:30 UTC; a visit on Sunday 2027-01-03 23:30 local is the week before.
    prior_week = BookedVisit("a", "r", utc(2027, 1, 4, 4, 30), utc(2027, 1, 4, 5), "completed")
    this_week = BookedVisit("b", "r", utc(2027, 1, 5, 15), utc(2027, 1, 5, 15, 30), "scheduled")
    cancelled = BookedVisit("c", "r", utc(2027, 1, 6, 15), utc(2027, 1, 6, 15, 30), "cancelled")
    s = schedule(windows=windows, limit=2, resident=[prior_week, this_week, cancelled])
    now = utc(2027, 1, 1)
    assert s.violations(Span(utc(2027, 1, 7, 15), utc(2027, 1, 7, 15, 30)), now) == []
    s2 = schedule(windows=windows, limit=1, resident=[prior_week, this_week])
    assert {v.slug for v in s2.violations(Span(utc(2027, 1, 7, 15), utc(2027, 1, 7, 15, 30)), now)} == {
        "weekly-limit-reached"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(5, 60)), max_size=12), st.integers(1, 4),
       st.integers(0, 200), st.integers(5, 60))
def test_a4_capacity_check_matches_a_minute_by_minute_count(existing: list[tuple[int, int]], kiosks: int,
                                                            start: int, length: int) -> None:
    """Property: a candidate is refused for capacity exactly when some minute would exceed the kiosks."""
    t0 = utc(2027, 1, 4, 12)
    visits = [BookedVisit(str(i), f"r{i}", t0 + timedelta(minutes=s), t0 + timedelta(minutes=s + n), "scheduled")
              for i, (s, n) in enumerate(existing)]
    sched = schedule(windows=[Window(d, 0, 1440) for d in range(7)], kiosks=kiosks, unit=visits, limit=100)
    cand = Span(t0 + timedelta(minutes=start), t0 + timedelta(minutes=start + length))
    busiest = max(sum(1 for v in visits if v.start <= t0 + timedelta(minutes=m) < v.end)
                  for m in range(start, start + length))
    refused = any(v.slug == "slot-taken" for v in sched.violations(cand, utc(2027, 1, 1)))
    assert refused == (busiest >= kiosks)


def test_available_slots_are_exactly_the_accepted_bookings() -> None:
    visits = [BookedVisit("x", "other", utc(2027, 3, 14, 13), utc(2027, 3, 14, 13, 30), "scheduled")]
    s = schedule(unit=visits)
    now = utc(2027, 3, 1)
    slots = s.available_slots(date(2027, 3, 14), date(2027, 3, 14), timedelta(minutes=30), now)
    starts = [x.start for x in slots]
    assert utc(2027, 3, 14, 12) in starts and utc(2027, 3, 14, 13) not in starts
    for minute in range(0, 180, 15):
        t = utc(2027, 3, 14, 12) + timedelta(minutes=minute)
        ok = not s.violations(Span(t, t + timedelta(minutes=30)), now)
        assert ok == (t in starts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 90)), max_size=15), st.integers(1, 4))
def test_a4_saturated_spans_are_exactly_the_full_minutes(visits: list[tuple[int, int]], capacity: int) -> None:
    t0 = utc(2027, 1, 4)
    spans = [Span(t0 + timedelta(minutes=s), t0 + timedelta(minutes=s + n)) for s, n in visits]
    full = SpanSet(saturated_spans(spans, capacity))
    for minute in range(0, 400):
        t = t0 + timedelta(minutes=minute)
        in_use = sum(1 for s in spans if s.start <= t < s.end)
        assert full.overlaps(Span(t, t + timedelta(minutes=1))) == (in_use >= capacity), minute


_T0 = utc(2027, 3, 10, 5)  # Wednesday 00:00 in New York; the range below crosses the March DST change
_visits = st.lists(st.tuples(st.integers(0, 7 * 96), st.sampled_from([15, 20, 30, 45, 60]),
                             st.sampled_from(["scheduled", "pending_review", "cancelled", "completed"]),
                             st.booleans()), max_size=25)


@settings(max_examples=250, deadline=None)
@given(unit=_visits, closures=st.lists(st.tuples(st.integers(0, 7 * 96), st.integers(1, 24)), max_size=3),
       kiosks=st.integers(1, 3), limit=st.integers(1, 6), lead_minutes=st.integers(0, 1500),
       horizon_days=st.integers(1, 8), length=st.sampled_from([20, 30, 45]),
       windows=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 95), st.integers(1, 40)), min_size=1,
                        max_size=6))
def test_available_slots_are_exactly_the_bookings_the_rules_accept(
        unit: list[tuple[int, int, str, bool]], closures: list[tuple[int, int]], kiosks: int, limit: int,
        lead_minutes: int, horizon_days: int, length: int, windows: list[tuple[int, int, int]]) -> None:
    """Property (A1-A5, B2-B5): the fast slot list and the one-booking check never disagree."""
    quarter = timedelta(minutes=15)
    booked = [BookedVisit(str(i), "r" if mine else f"o{i}", _T0 + q * quarter, _T0 + q * quarter
                          + timedelta(minutes=n), status) for i, (q, n, status, mine) in enumerate(unit)]
    sched = Schedule(
        policy=Policy(NY, horizon_days, lead_minutes, limit, kiosks),
        windows=[Window(d, q * 15, min(1440, q * 15 + n * 15)) for d, q, n in windows],
        closures=[Span(_T0 + q * quarter, _T0 + (q + n) * quarter) for q, n in closures],
        unit_visits=booked, resident_visits=[v for v in booked if v.resident_id == "r"])
    now = _T0 - timedelta(hours=3)
    first, last = date(2027, 3, 10), date(2027, 3, 16)
    slots = sched.available_slots(first, last, timedelta(minutes=length), now)
    listed = {s.start for s in slots}
    assert len(listed) == len(slots)
    candidates = {w.start + k * quarter for w in sched.window_spans(first, last)
                  for k in range(0, 96) if w.start + k * quarter + timedelta(minutes=length) <= w.end}
    for start in candidates:
        span = Span(start, start + timedelta(minutes=length))
        assert (not sched.violations(span, now)) == (start in listed), (start, sched.violations(span, now))
    assert listed <= candidates
