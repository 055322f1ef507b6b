"""How many wrong passwords before sign-in slows down, and for how long (issue 12).

Two counters stand between a guesser and an account: one per account name (slows a guess at
one person's password from many addresses) and one per source address (slows one machine
trying many accounts). Each allows a few failures, then blocks for a time that doubles with
every further failure, up to a ceiling; a success on the account clears the account counter.
While blocked, the password is not even checked, so a blocked guesser learns nothing. The
account holder is told once per block (a notice by mail).

Pure: the caller stores `ThrottleState` rows and passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int  # failures inside the window that are answered; the last of them starts a block
    first_block: timedelta  # the block after the first failure over the limit; doubles after each
    max_block: timedelta
    window: timedelta  # failures older than this (with no block running) are forgotten


ACCOUNT_POLICY = ThrottlePolicy(free_failures=5, first_block=timedelta(seconds=30),
                                max_block=timedelta(minutes=15), window=timedelta(minutes=15))
SOURCE_POLICY = ThrottlePolicy(free_failures=20, first_block=timedelta(minutes=1),
                               max_block=timedelta(hours=1), window=timedelta(minutes=15))


@dataclass(frozen=True)
class ThrottleState:
    failures: int
    first_failure_at: datetime
    last_failure_at: datetime
    blocked_until: datetime | None = None


def retry_after(state: ThrottleState | None, now: datetime) -> timedelta | None:
    """How long the caller must wait before its password is checked again (None: go ahead)."""
    if state is None or state.blocked_until is None or state.blocked_until <= now:
        return None
    return state.blocked_until - now


def after_failure(policy: ThrottlePolicy, state: ThrottleState | None, now: datetime) -> ThrottleState:
    """The counter after one more failure; blocks once the free failures are used up."""
    if state is None or (now - state.last_failure_at > policy.window and retry_after(state, now) is None):
        state = ThrottleState(failures=0, first_failure_at=now, last_failure_at=now)
    failures = state.failures + 1
    blocked_until = state.blocked_until
    over = failures - policy.free_failures  # the failure that uses up the allowance starts the first block
    if over >= 0:
        block = min(policy.first_block * (2 ** min(over, 30)), policy.max_block)
        blocked_until = now + block
    return replace(state, failures=failures, last_failure_at=now, blocked_until=blocked_until)


def newly_blocked(before: ThrottleState | None, after: ThrottleState, now: datetime) -> bool:
    """True when this failure started a block (the moment to tell the account holder)."""
    return retry_after(after, now) is not None and retry_after(before, now) is None
