"""Validation of facility configuration (A1-A8, M8). Pure: returns messages, raises nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo, available_timezones

from control_api.domain.rates import format_cents_per_minute, per_minute_cap_cents

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def timezone_problem(name: str) -> str | None:
    """A1: the zone must be a real IANA zone (so DST is known), not an offset like 'UTC-5'.

    Checked against the zone list first: `ZoneInfo` alone raises OSError for a folder such as
    'America/Indiana' and accepts 'right/...' and 'posix/...' variants.
    """
    if "/" not in name and name != "UTC":
        return f"{name!r} is not an IANA time zone such as 'America/Chicago' (rule A1)"
    if name not in _known_zones():
        return f"{name!r} is not a known IANA time zone (rule A1)"
    try:
        ZoneInfo(name)
    except (ValueError, OSError):
        return f"{name!r} is not a known IANA time zone (rule A1)"
    return None


@dataclass(frozen=True)
class WindowSpec:
    weekday: int
    start_minute: int
    end_minute: int


def parse_hhmm(text: str, *, allow_24: bool = False) -> int:
    """'HH:MM' to minutes after local midnight; '24:00' (end of day) only when allowed."""
    hh, mm = text.split(":")
    minute = int(hh) * 60 + int(mm)
    if not (0 <= int(mm) < 60) or minute < 0 or minute > (1440 if allow_24 else 1439):
        raise ValueError(f"{text!r} is not a time of day")
    return minute


def format_minute(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def window_problems(windows: Sequence[WindowSpec]) -> list[str]:
    """A2: windows must be non-empty spans, and not overlap on the same weekday."""
    problems = []
    for w in windows:
        if w.start_minute >= w.end_minute:
            problems.append(f"{WEEKDAYS[w.weekday]} {format_minute(w.start_minute)}-{format_minute(w.end_minute)}: "
                            "start must be before end")
    by_day: dict[int, list[WindowSpec]] = {}
    for w in windows:
        if w.start_minute < w.end_minute:
            by_day.setdefault(w.weekday, []).append(w)
    for day, items in sorted(by_day.items()):
        items.sort(key=lambda w: w.start_minute)
        for a, b in pairwise(items):
            if b.start_minute < a.end_minute:
                problems.append(f"{WEEKDAYS[day]}: {format_minute(a.start_minute)}-{format_minute(a.end_minute)} "
                                f"overlaps {format_minute(b.start_minute)}-{format_minute(b.end_minute)}")
    return problems


def booking_window_problem(*, booking_horizon_days: int, min_lead_minutes: int) -> str | None:
    """A5: the minimum lead time must leave some of the horizon bookable."""
    if min_lead_minutes >= booking_horizon_days * 24 * 60:
        return (f"the minimum lead time ({min_lead_minutes} minutes) must be shorter than the booking horizon "
                f"({booking_horizon_days} days), or nothing could ever be booked (rule A5)")
    return None


def rate_cap_problem(*, billing_mode: str, size_tier: str, per_minute_cents: int, visit_type: str) -> str | None:
    """M8: in per-minute billing a video rate above the tier's cap is refused, with the cap."""
    if billing_mode != "per_minute":
        return None
    cap = per_minute_cap_cents(size_tier)
    if per_minute_cents > cap:
        return (f"{visit_type} rate {format_cents_per_minute(per_minute_cents)} exceeds the cap of "
                f"{format_cents_per_minute(cap)} for size tier {size_tier} (rule M8)")
    return None
