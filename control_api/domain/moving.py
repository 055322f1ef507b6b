"""Who may move a visit, until when, and what status it has afterwards (issue 13; rules A6, A7,
M3a, B1-B5). Pure, so each case is one test.

The booker (visitor or attorney) may move their own visit only while a cancellation would still
earn a credit (at least the facility's notice before the CURRENT start, A6/M3a): otherwise moving
would let a family dodge the short-notice rule (move instead of cancelling late). Facility admins
move at any time before the start. The new time itself meets every booking rule (B2-B5), checked
elsewhere (domain.schedule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

MOVABLE_STATUSES = ("pending_review", "scheduled")
MoveReason = Literal["allowed", "not_movable", "started", "too_late"]


@dataclass(frozen=True)
class MoveVerdict:
    """Whether the caller may move the visit now; `slug` and `message` are the refusal's."""

    reason: MoveReason
    deadline: datetime | None  # the booker may move until this instant (None for facility staff)
    slug: str = ""
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason == "allowed"


def move_deadline(starts_at: datetime, notice_hours: int) -> datetime:
    """The last instant a booker may move the visit: the same line as a credited cancellation (M3a)."""
    return starts_at - timedelta(hours=notice_hours)


def may_move(*, status: str, starts_at: datetime, now: datetime, by_booker: bool, notice_hours: int,
             timezone: str) -> MoveVerdict:
    """The verdict on moving a visit now: staff before the start, the booker until the notice line."""
    deadline = move_deadline(starts_at, notice_hours) if by_booker else None
    if status not in MOVABLE_STATUSES:
        return MoveVerdict("not_movable", deadline, "not-movable", f"a {status} visit cannot be moved")
    if now >= starts_at:
        return MoveVerdict("started", deadline, "visit-started", "the visit has started and can no longer be moved")
    if deadline is not None and now > deadline:
        local = deadline.astimezone(ZoneInfo(timezone))
        return MoveVerdict("too_late", deadline, "too-late-to-move", (
            f"a visit can be moved only with the facility's {notice_hours} hours' notice, until "
            f"{local:%a %b %d %Y, %H:%M} {local.tzname()} ({timezone}) for this one; you can still cancel it "
            "(rules A6, M3a)"))
    return MoveVerdict("allowed", deadline)


def status_after_move(status: str, *, by_booker: bool, review_mode: str) -> str:
    """A7: under manual review, a time chosen by the booker waits for staff approval again;
    a move by the facility itself keeps the status."""
    if by_booker and review_mode == "manual":
        return "pending_review"
    return status
