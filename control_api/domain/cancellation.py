"""Which cancellations earn a credit (rules M3, M4) and why. Pure, so each case is one test."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

CancelledBy = Literal["visitor", "facility", "operator"]


def cancellation_credit_rule(*, cancelled_by: CancelledBy, now: datetime, starts_at: datetime,
                             notice_hours: int) -> str | None:
    """The rule that grants a credit for this cancellation, or None when none is due.

    M3(a) the visitor cancels with at least the facility's notice (A6); (b) the facility cancels
    before the start; (d) the operator cancels before the start. M4: never once the start passed.
    """
    if now >= starts_at:
        return None
    if cancelled_by == "visitor":
        return "M3a" if starts_at - now >= timedelta(hours=notice_hours) else None
    if cancelled_by == "facility":
        return "M3b"
    return "M3d"


def rejection_credit_rule(*, now: datetime, starts_at: datetime) -> str | None:
    """M3(c): the facility rejects a paid booking before it starts."""
    return "M3c" if now < starts_at else None
