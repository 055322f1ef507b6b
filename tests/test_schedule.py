"""Pure schedule rules: DST (A1), windows (A2), capacity (A4), lead/horizon (A5), limits (B3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from control_api.domain.schedule import BookedVisit, Policy, Schedule, Span, Window

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
    # and back in November: Sunday 2027-11-07 is the day DST ends (EST again)
    (nov,) = s.window_spans(date(2027, 11, 7), date(2027, 11, 7))
    assert nov.start == utc(2027, 11, 7, 13)


def test_b2_a_visit_crossing_the_window_end_or_a_closure_is_refused() -> None:
    now = utc(2027, 3, 1)
    s = schedule(closures=[Span(utc(2027, 3, 14, 12), utc(2027, 3, 14, 13))])
    slugs = {v.slug for v in s.violations(Span(utc(2027, 3, 14, 14, 45), utc(2027, 3, 14, 15, 15)), now)}
    assert "outside-visitation-window" in slugs
    slugs = {v.slug for v in s.violations(Span(utc(2027, 3, 14, 12, 30), utc(2027, 3, 14, 13)), now)}
    assert slugs == {"facility-closed"}
    assert s.violations(Span(utc(2027, 3, 14, 13), utc(2027, 3, 14, 13, 30)), now) == []


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
