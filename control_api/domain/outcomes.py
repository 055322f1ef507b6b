"""How a visit ended (rule S6), decided from what the media plane saw. Pure.

- The media plane reported an end: `failed` stays failed (a system fault, credited under M6);
  `disconnected` carries the officer's reason (S4); otherwise the visit is `completed` if both
  parties were ever connected, else a no-show.
- No report by the scheduled end (the sweep): both joined means completed; otherwise a no-show.
- No-shows: when the visitor never joined, `no_show_visitor` (the visitor had the whole window;
  this includes the case where nobody came); when the visitor joined but the resident never did,
  `no_show_resident`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinalStatus = Literal["completed", "no_show_visitor", "no_show_resident", "disconnected", "failed"]
TERMINAL = frozenset({"completed", "no_show_visitor", "no_show_resident", "disconnected", "failed", "cancelled",
                      "rejected"})
DISCONNECT_REASONS = frozenset({"conduct", "facility", "technical"})


@dataclass(frozen=True)
class Attendance:
    visitor_joined: bool
    resident_joined: bool


def no_show(attendance: Attendance) -> FinalStatus:
    return "no_show_visitor" if not attendance.visitor_joined else "no_show_resident"


Reported = Literal["completed", "disconnected", "failed"]


def final_status(attendance: Attendance, reported: Reported | None) -> FinalStatus:
    if reported == "failed":
        return "failed"
    if reported == "disconnected":
        return "disconnected"
    if attendance.visitor_joined and attendance.resident_joined:
        return "completed"
    return no_show(attendance)


def credit_rule_for(status: FinalStatus, disconnect_reason: str | None) -> str | None:
    """M6: a failure of ours is credited automatically. M4: no credit for conduct or facility
    disconnects, nor for the visitor's own network; a `technical` disconnect by an officer is a
    facility-side problem the visitor can raise through a credit request (M6), not automatic."""
    return "M6" if status == "failed" else None
