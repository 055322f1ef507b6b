"""How a visit ended (rule S6), decided from what the media plane saw. Pure.

- The media plane reported an end: `failed` stays failed (a system fault, credited under M6);
  `disconnected` carries the officer's reason (S4); otherwise the visit is `completed` if both
  parties were ever connected, else a no-show.
- No report by the scheduled end (the sweep, after a short grace for the report to arrive):
  both joined means completed; otherwise a no-show.
- No-shows: when the visitor never joined, `no_show_visitor` (the visitor had the whole window;
  this includes the case where nobody came, since the resident's side is the facility's and a
  kiosk is always there); when the visitor joined but the resident never did, `no_show_resident`.
- Media that flowed (a `started` report, or connected seconds in the end report) proves both
  sides were there, even if a join report was lost or arrives after the end (reports are
  retried independently, so their order is not guaranteed).
- Interrupted by our side (a media session lost: its node died or went silent) and never
  resumed (no later session in which both parties' media flowed again): `failed`, credited
  automatically (M6), whatever a later lone party's session reported, unless the visitor never
  came at all. An officer's disconnect stands as reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

FinalStatus = Literal["completed", "no_show_visitor", "no_show_resident", "disconnected", "failed"]
LIVE = frozenset({"scheduled", "in_progress"})
TERMINAL = frozenset({"completed", "no_show_visitor", "no_show_resident", "disconnected", "failed", "cancelled",
                      "rejected"})
DISCONNECT_REASONS = frozenset({"conduct", "facility", "technical"})


@dataclass(frozen=True)
class Attendance:
    visitor_joined: bool
    resident_joined: bool
    media_flowed: bool = False  # `started` seen or connected seconds reported: both were there

    @property
    def both(self) -> bool:
        return self.media_flowed or (self.visitor_joined and self.resident_joined)


def no_show(attendance: Attendance) -> FinalStatus:
    return "no_show_visitor" if not attendance.visitor_joined else "no_show_resident"


Reported = Literal["completed", "disconnected", "failed"]


def final_status(attendance: Attendance, reported: Reported | None, *, interrupted: bool = False) -> FinalStatus:
    if reported == "disconnected":
        return "disconnected"
    if interrupted:
        return "failed" if attendance.visitor_joined or attendance.media_flowed else "no_show_visitor"
    if reported == "failed":
        return "failed"
    if attendance.both:
        return "completed"
    return no_show(attendance)


def credit_rule_for(status: FinalStatus, disconnect_reason: str | None) -> str | None:
    """M6: a failure of ours is credited automatically. M4: no credit for conduct or facility
    disconnects, nor for the visitor's own network; a `technical` disconnect by an officer is a
    facility-side problem: a credit request is opened on the visitor's behalf (S4, M6;
    services/credit_requests.py: open_on_behalf), decided like any other, not credited at once."""
    return "M6" if status == "failed" else None


@dataclass(frozen=True)
class SessionView:
    """One media session (a room on one node start) as the outcome rules see it."""

    started_at: datetime
    lost: bool  # its node died or went silent before it ended
    connected_seconds: int  # both parties present with media flowing


def interrupted_without_resuming(sessions: Iterable[SessionView]) -> bool:
    """S5/S6: some session was lost, and no session after it had both parties' media flowing."""
    ordered = sorted(sessions, key=lambda s: s.started_at)
    return any(s.lost and not any(later.connected_seconds > 0 for later in ordered[i + 1:])
               for i, s in enumerate(ordered))


@dataclass(frozen=True)
class Presence:
    """One join or leave report: `kind` is participant_joined or participant_left."""

    at: datetime
    kind: str
    participant: str


def both_present_seconds(reports: Iterable[Presence], starts_at: datetime, ends_at: datetime) -> int:
    """Seconds in [start, end] during which both sides were present, from the join and leave
    reports (S5: a drop and rejoin is a gap, not a restart; S1: media flows only from the start).
    Used when the media plane never sent its own measure."""
    present = {"visitor": False, "resident": False}
    total = 0.0
    since: datetime | None = None
    for r in sorted(reports, key=lambda x: x.at):
        if r.participant not in present:
            continue
        was_both = all(present.values())
        present[r.participant] = r.kind == "participant_joined"
        now_both = all(present.values())
        if now_both and not was_both:
            since = r.at
        elif was_both and not now_both and since is not None:
            total += _overlap(since, r.at, starts_at, ends_at)
            since = None
    if since is not None:
        total += _overlap(since, ends_at, starts_at, ends_at)
    return int(total)


def _overlap(a: datetime, b: datetime, lo: datetime, hi: datetime) -> float:
    return max(0.0, (min(b, hi) - max(a, lo)).total_seconds())
