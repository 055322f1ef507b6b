"""VideoThinning: audio first on a weak link.

Relaying the receiver's REMB upstream lets a publisher's encoder adapt, but some publishers
cannot go low enough (aiortc's VP8 encoder stops at 250 kbps) or ignore REMB. When a receiver's
link cannot carry the video it is sent (its estimate is below the video's bitrate), its consumer
forwards keyframes only, one asked for every couple of seconds: the picture degrades to a
slideshow while the audio keeps its place on the link, instead of both breaking up. From time to
time the consumer probes full video again, backing off while the link stays too weak.

Pure logic on a clock passed in, so it is tested without media.
"""

from __future__ import annotations

from collections.abc import Callable


class VideoThinning:
    # Video bitrate above estimate x margin: the link cannot carry it. Wide, because a receiver's
    # estimator starts below the incoming rate and climbs slowly; a publisher that adapts to the
    # relayed REMB stays near the estimate and is never thinned.
    MARGIN = 1.5
    KEYFRAME_EVERY = 2.0  # seconds between keyframes asked for while thinned
    FIRST_PROBE = 10.0  # seconds thinned before trying full video again (a failed try costs ~1 s of audio)
    MAX_PROBE = 60.0
    SETTLE = 1.5  # after a probe, estimates this fresh may still describe the thinned stream
    STABLE = 20.0  # full video this long after a probe: the link has recovered

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._active = False
        self._on_change = on_change  # told whenever `active` flips (the consumer's bypass depends on it)
        self.times_thinned = 0
        self.probe_after = self.FIRST_PROBE
        self._since = 0.0
        self._resumed_at: float | None = None
        self._last_keyframe_request = float("-inf")

    @property
    def active(self) -> bool:
        """Keyframes only, now."""
        return self._active

    @active.setter
    def active(self, active: bool) -> None:
        if active != self._active:
            self._active = active
            if self._on_change is not None:
                self._on_change()

    def on_estimate(self, now: float, estimate: int, video_bitrate: int | None) -> None:
        """A receiver's bandwidth estimate (bits/s) against the video's incoming bitrate."""
        if self.active or not video_bitrate or video_bitrate <= estimate * self.MARGIN:
            return
        if self._resumed_at is not None:
            since_probe = now - self._resumed_at
            if since_probe < self.SETTLE:
                return
            # A probe that failed soon waits twice as long next time; a long good run starts over.
            self.probe_after = min(self.probe_after * 2, self.MAX_PROBE) if since_probe < self.STABLE \
                else self.FIRST_PROBE
        self.active = True
        self.times_thinned += 1
        self._since = now

    def probe_due(self, now: float) -> bool:
        """True once when it is time to try full video again (the caller resumes at a keyframe)."""
        if self.active and now - self._since >= self.probe_after:
            self.active = False
            self._resumed_at = now
            return True
        return False

    def keyframe_wanted(self, now: float) -> bool:
        if now - self._last_keyframe_request >= self.KEYFRAME_EVERY:
            self._last_keyframe_request = now
            return True
        return False
