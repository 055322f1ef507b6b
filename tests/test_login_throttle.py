"""The sign-in throttle's policy (control_api/domain/login_throttle.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_api.domain.login_throttle import (
    ACCOUNT_POLICY,
    ThrottlePolicy,
    after_failure,
    newly_blocked,
    retry_after,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
POLICY = ThrottlePolicy(free_failures=3, first_block=timedelta(seconds=10), max_block=timedelta(seconds=35),
                        window=timedelta(minutes=15))


def test_the_last_free_failure_starts_a_block_that_doubles_up_to_the_ceiling() -> None:
    state = None
    for _ in range(2):
        state = after_failure(POLICY, state, T0)
        assert retry_after(state, T0) is None
    before = state
    state = after_failure(POLICY, state, T0)
    assert retry_after(state, T0) == timedelta(seconds=10) and newly_blocked(before, state, T0)
    blocks = []
    now = T0
    for _ in range(4):
        now = now + (retry_after(state, now) or timedelta())  # wait out the block, then fail again
        before, state = state, after_failure(POLICY, state, now)
        assert newly_blocked(before, state, now)
        blocks.append(retry_after(state, now))
    assert blocks == [timedelta(seconds=20), timedelta(seconds=35), timedelta(seconds=35), timedelta(seconds=35)]


def test_old_failures_are_forgotten_after_the_window() -> None:
    state = after_failure(POLICY, after_failure(POLICY, None, T0), T0)
    later = T0 + POLICY.window + timedelta(seconds=1)
    state = after_failure(POLICY, state, later)
    assert state.failures == 1 and retry_after(state, later) is None


def test_a_block_running_is_not_newly_blocked_and_ends_by_itself() -> None:
    state = None
    for _ in range(3):
        state = after_failure(POLICY, state, T0)
    assert retry_after(state, T0 + timedelta(seconds=10)) is None
    assert retry_after(state, T0 + timedelta(seconds=9)) == timedelta(seconds=1)


def test_account_policy_is_five_then_thirty_seconds() -> None:
    assert ACCOUNT_POLICY.free_failures == 5 and ACCOUNT_POLICY.first_block == timedelta(seconds=30)
