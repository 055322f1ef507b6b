"""domain.moving: who may move a visit, until when (A6/M3a), and its status afterwards (A7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_api.domain.cancellation import cancellation_credit_rule
from control_api.domain.moving import may_move, move_deadline, status_after_move

START = datetime(2031, 3, 10, 15, 0, tzinfo=UTC)


def verdict(now: datetime, *, status: str = "scheduled", by_booker: bool = True, notice: int = 24) -> str:
    return may_move(status=status, starts_at=START, now=now, by_booker=by_booker, notice_hours=notice,
                    timezone="America/Chicago").reason


def test_the_booker_may_move_until_the_notice_line_and_not_a_second_later() -> None:
    deadline = move_deadline(START, 24)
    assert deadline == START - timedelta(hours=24)
    assert verdict(deadline - timedelta(days=3)) == "allowed"
    assert verdict(deadline) == "allowed"  # exactly the notice: as a credited cancellation (M3a)
    assert verdict(deadline + timedelta(seconds=1)) == "too_late"


@pytest.mark.parametrize("minutes_before", [24 * 60 + 1, 24 * 60, 24 * 60 - 1, 1])
def test_the_move_line_is_the_credited_cancellation_line(minutes_before: int) -> None:
    """A6/M3a: moving is allowed exactly when cancelling would still earn a credit."""
    now = START - timedelta(minutes=minutes_before)
    credited = cancellation_credit_rule(cancelled_by="visitor", now=now, starts_at=START, notice_hours=24) is not None
    assert (verdict(now) == "allowed") is credited


def test_too_late_names_the_deadline_in_facility_time() -> None:
    v = may_move(status="scheduled", starts_at=START, now=START - timedelta(hours=2), by_booker=True, notice_hours=48,
                 timezone="America/Chicago")
    assert (v.allowed, v.slug, v.deadline) == (False, "too-late-to-move", START - timedelta(hours=48))
    assert "48 hours" in v.message and "Sat Mar 08 2031, 09:00 CST" in v.message and "America/Chicago" in v.message


def test_staff_move_until_the_start_whatever_the_notice() -> None:
    assert verdict(START - timedelta(minutes=5), by_booker=False) == "allowed"
    assert may_move(status="scheduled", starts_at=START, now=START, by_booker=False, notice_hours=24,
                    timezone="UTC").deadline is None
    assert verdict(START, by_booker=False) == "started"


@pytest.mark.parametrize("status", ["in_progress", "completed", "cancelled", "rejected", "failed"])
def test_only_scheduled_or_pending_visits_move(status: str) -> None:
    assert verdict(START - timedelta(days=5), status=status) == "not_movable"
    assert verdict(START - timedelta(days=5), status=status, by_booker=False) == "not_movable"


def test_a7_the_bookers_new_time_waits_for_review_under_manual_review() -> None:
    assert status_after_move("scheduled", by_booker=True, review_mode="manual") == "pending_review"
    assert status_after_move("scheduled", by_booker=True, review_mode="auto") == "scheduled"
    assert status_after_move("scheduled", by_booker=False, review_mode="manual") == "scheduled"
    assert status_after_move("pending_review", by_booker=False, review_mode="manual") == "pending_review"
