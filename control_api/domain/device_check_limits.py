"""How often one account may ask for a device check (issue 13): a sliding window per account.

A check costs the media server a peer connection for up to a minute, so each account gets a few
per hour; the next one is allowed when the oldest in the window is an hour old, and the refusal
says when. Pure: the caller keeps the `CheckRate` and passes the time in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CHECKS_PER_WINDOW = 10
WINDOW = timedelta(hours=1)


@dataclass
class CheckRate:
    """One account's checks inside the window, oldest first."""

    issued: deque[datetime] = field(default_factory=deque)


def wait_before_next(rate: CheckRate, now: datetime, *, limit: int = CHECKS_PER_WINDOW,
                     window: timedelta = WINDOW) -> timedelta | None:
    """None when another check may be issued now, else how long until one may."""
    while rate.issued and now - rate.issued[0] >= window:
        rate.issued.popleft()
    if len(rate.issued) < limit:
        return None
    return rate.issued[0] + window - now


def issued(rate: CheckRate, now: datetime) -> None:
    rate.issued.append(now)
