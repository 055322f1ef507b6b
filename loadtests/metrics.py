"""What one party of a visit saw, turned into the numbers an SRE reads: first frame, received fps,
freezes (WebRTC's definition), bitrate, RTP loss and jitter. Pure functions of recorded arrivals
and RTP statistics, so they are tested without a network and without Locust."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# WebRTC's freeze definition, the same code the SFU counts its freezes with (its /metrics).
from sfu.freeze_detector import Freezes, freezes


def received_fps(arrivals: Sequence[float], since: float | None = None, until: float | None = None) -> float:
    """Frames per second over [since, until] (defaults: first and last arrival)."""
    if not arrivals:
        return 0.0
    start = arrivals[0] if since is None else since
    end = arrivals[-1] if until is None else until
    frames = sum(1 for t in arrivals if start <= t <= end)
    return frames / (end - start) if end > start else 0.0


@dataclass(frozen=True)
class RtpCounts:
    """One inbound stream's RTP receiver statistics (RFC 3550 A.3/A.8), jitter in clock units."""

    received: int
    lost: int
    jitter_units: int
    clock_rate: int

    @property
    def jitter_ms(self) -> float:
        return 1000.0 * self.jitter_units / self.clock_rate if self.clock_rate else 0.0


def loss_fraction(streams: Iterable[RtpCounts]) -> float:
    """Packets lost over packets expected, all streams together (lost can be negative with duplicates)."""
    received = lost = 0
    for s in streams:
        received += s.received
        lost += max(0, s.lost)
    expected = received + lost
    return lost / expected if expected else 0.0


@dataclass
class PartyMetrics:
    """Everything one party measured during one visit session; times are time.monotonic()."""

    side: str
    join_started: float = 0.0
    join_http_s: float | None = None
    signaling_started: float | None = None
    ice_connected: float | None = None
    first_video: float | None = None
    first_audio: float | None = None
    video_arrivals: list[float] = field(default_factory=list)
    audio_frames: int = 0
    bytes_received: int = 0
    rtp: list[RtpCounts] = field(default_factory=list)
    left: float | None = None
    outcome: str = "not started"
    error: str | None = None

    @property
    def ice_s(self) -> float | None:
        if self.ice_connected is None or self.signaling_started is None:
            return None
        return self.ice_connected - self.signaling_started

    @property
    def first_frame_s(self) -> float | None:
        """Asking to join (the HTTP request) to the first complete video frame of the other party."""
        return None if self.first_video is None else self.first_video - self.join_started

    @property
    def fps(self) -> float:
        """Received video frames per second from the first frame until leaving."""
        return received_fps(self.video_arrivals, until=self.left)

    @property
    def freezes(self) -> Freezes:
        return freezes(self.video_arrivals)

    @property
    def bitrate_kbps(self) -> float:
        """Audio and video payload received per second, from the first frame until leaving."""
        start = self.first_video if self.first_video is not None else self.first_audio
        end = self.left if self.left is not None else (self.video_arrivals[-1] if self.video_arrivals else None)
        if start is None or end is None or end <= start:
            return 0.0
        return self.bytes_received * 8 / 1000 / (end - start)

    @property
    def loss(self) -> float:
        return loss_fraction(self.rtp)

    @property
    def jitter_ms(self) -> float:
        """The largest inbound stream's interarrival jitter (RFC 3550), in milliseconds."""
        return max((s.jitter_ms for s in self.rtp), default=0.0)
