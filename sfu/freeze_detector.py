"""Video freezes as WebRTC counts them (webrtc-stats `freezeCount`, `totalFreezesDuration`;
libwebrtc's video_quality_observer2.cc): a frame whose interval since the previous one is at least
max(3 x avg, avg + 150 ms), avg over the last 30 intervals, this one included, once 5 are known.
An interval of 5 s or more is a pause (`pauseCount`: the sender stopped), not a freeze, and stays
out of the average.

Pure and shared: the SFU counts the freezes of the frames it forwards (sfu/media_quality.py), the
load generator those of the frames a party receives (loadtests/metrics.py), with this same code.
Each frame costs O(1) (a running sum over a bounded window)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

FREEZE_WINDOW = 30  # intervals in the moving average (kAvgInterframeDelaysWindowSizeFrames)
FREEZE_FLOOR_S = 0.150  # a freeze is an interval >= max(3 x avg, avg + 150 ms) (kMinIncreaseForFreezeMs)
MIN_INTERVALS = 5  # intervals needed before a freeze can be told (kMinFrameSamplesToDetectFreeze)
PAUSE_S = 5.0  # an interval this long is a pause (webrtc-stats pauseCount), not a freeze


@dataclass(frozen=True)
class Freezes:
    count: int
    total_seconds: float


class FreezeDetector:
    """Fed frame arrival times in order; says which interval was a freeze."""

    __slots__ = ("_last", "_recent", "_sum", "count", "pauses", "total_seconds")

    def __init__(self, window: int = FREEZE_WINDOW) -> None:
        self._recent: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._last: float | None = None
        self.count = 0
        self.total_seconds = 0.0
        self.pauses = 0

    def frame(self, at: float) -> float | None:
        """One frame arrived at `at` (seconds): the freeze it ended (its duration), else None."""
        last, self._last = self._last, at
        if last is None:
            return None
        interval = at - last
        if interval >= PAUSE_S:
            self.pauses += 1
            return None
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._sum -= recent[0]
        recent.append(interval)
        self._sum += interval
        if len(recent) >= MIN_INTERVALS:
            avg = self._sum / len(recent)
            if interval >= max(3 * avg, avg + FREEZE_FLOOR_S):
                self.count += 1
                self.total_seconds += interval
                return interval
        return None

    def frames(self, count: int, start: float, end: float) -> list[float]:
        """`count` frames arrived in (start, end] at unknown moments (a counter read at `start`
        and `end`): taken as evenly spread, the last at `end`. The freezes they ended."""
        if count <= 0:
            return []
        step = (end - start) / count
        ended = (self.frame(start + step * (i + 1)) for i in range(count))
        return [duration for duration in ended if duration is not None]


def freezes(arrivals: Iterable[float], window: int = FREEZE_WINDOW) -> Freezes:
    """The freezes of a whole recorded sequence of frame arrival times."""
    detector = FreezeDetector(window)
    for at in arrivals:
        detector.frame(at)
    return Freezes(detector.count, detector.total_seconds)
