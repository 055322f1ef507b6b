"""Timeline: maps each producer's RTP timestamps onto the visit's recording clock (ms).

Both parties' files share one origin, the moment recording began, so they play in sync. A
producer's first frame is anchored at its arrival time; later frames advance by their RTP
timestamp (handling 32-bit wrap), which keeps the publisher's own spacing and survives a pause
in video (the RTP clock runs on). A rejoin brings a new producer, anchored afresh. Timestamps
never go backwards within a stream.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class _Anchor:
    arrival_ms: int
    first_rtp: int
    last_rtp_unwrapped: int
    clock_rate: int


class Timeline:
    def __init__(self, origin: float) -> None:
        self.origin = origin  # time.monotonic() when recording began
        self._anchors: dict[str, _Anchor] = {}
        self._last_pts: dict[str, int] = {}  # per output stream

    def pts_ms(self, producer_id: str, stream: str, rtp_timestamp: int, clock_rate: int, arrival: float) -> int:
        anchor = self._anchors.get(producer_id)
        if anchor is None:
            anchor = _Anchor(max(0, round((arrival - self.origin) * 1000)), rtp_timestamp, rtp_timestamp, clock_rate)
            self._anchors[producer_id] = anchor
        # Unwrap against the last timestamp seen (RTP timestamps are 32-bit and wrap).
        last = anchor.last_rtp_unwrapped
        delta = (rtp_timestamp - last) % 2**32
        unwrapped = last + delta if delta < 2**31 else last - (2**32 - delta)
        anchor.last_rtp_unwrapped = unwrapped
        pts = anchor.arrival_ms + round((unwrapped - anchor.first_rtp) * 1000 / clock_rate)
        previous = self._last_pts.get(stream)
        if previous is not None and pts <= previous:
            pts = previous + 1
        self._last_pts[stream] = pts
        return pts
