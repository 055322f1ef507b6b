"""The quality of the media the SFU receives, across all streams: loss, jitter, video freezes.

For load tests and production (issue 16): Prometheus histograms across streams, labelled only by
kind and side, never by visit (visits are many). One sampler task per SFU, on a timer, nothing per
packet or per frame:
- every `FRAME_TICK` it reads each video producer's frame counter (frames through Python and
  frames the C fast path sent past it alike, `Producer.frames_published`) and feeds the frames of
  each tick, spread evenly over it, to a `FreezeDetector` (WebRTC's freeze definition). Freezes
  are thus measured to about one tick: a gap of 2 ticks or more over the threshold is always
  counted, a shorter one may be missed, and durations are exact to +/- one tick;
- every `STATS_EVERY` ticks it reads each producer's receiver statistics (RTCP receiver-report
  counters the tap keeps anyway) and observes the interval's loss ratio and the current jitter.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sfu.freeze_detector import FreezeDetector
from sfu.router.frames import Kind

FRAME_TICK = 0.1  # seconds between reads of the frame counters (freeze resolution)
STATS_EVERY = 20  # ticks between reads of the receiver statistics (2 s)
LOSS_BUCKETS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
FREEZE_BUCKETS = (0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
SIDES = ("visitor", "resident")
KINDS: tuple[Kind, ...] = ("audio", "video")


class StreamCounts(Protocol):
    """One received SSRC's cumulative counts (sfu.aiortc_adapter.receive_statistics.ReceivedStream)."""

    @property
    def ssrc(self) -> int: ...
    @property
    def packets_received(self) -> int: ...
    @property
    def packets_expected(self) -> int: ...
    @property
    def jitter_seconds(self) -> float: ...


class CountedProducer(Protocol):
    """What the sampler reads of a producer (sfu.router.Producer)."""

    @property
    def kind(self) -> Kind: ...
    @property
    def frames_published(self) -> int: ...
    @property
    def closed(self) -> bool: ...


ReadStatistics = Callable[[], Sequence[StreamCounts]]


@dataclass
class Histogram:
    """Cumulative-bucket counts as Prometheus exposes them (the last bucket is +Inf)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return cumulative


@dataclass
class _Watched:
    producer: CountedProducer
    side: str
    statistics: ReadStatistics
    frames: int = 0
    frames_read_at: float = 0.0
    freezes: FreezeDetector = field(default_factory=FreezeDetector)
    last: dict[int, tuple[int, int]] = field(default_factory=dict)  # ssrc -> (received, expected) last read


class MediaQuality:
    """The SFU's received-media quality, accumulated since the start (read by `SfuCollector`)."""

    def __init__(self, *, tick: float = FRAME_TICK, stats_every: int = STATS_EVERY) -> None:
        self.tick = tick
        self.stats_every = stats_every
        self.loss = {(k, s): Histogram(LOSS_BUCKETS) for k in KINDS for s in SIDES}
        self.jitter = {(k, s): Histogram(JITTER_BUCKETS) for k in KINDS for s in SIDES}
        self.packets_received = dict.fromkeys(self.loss, 0)
        self.packets_lost = dict.fromkeys(self.loss, 0)
        self.freezes = {s: Histogram(FREEZE_BUCKETS) for s in SIDES}
        self._watched: list[_Watched] = []
        self._task: asyncio.Task[None] | None = None

    def watch(self, producer: CountedProducer, side: str, statistics: ReadStatistics) -> None:
        """Sample `producer` (published by `side`) until it closes; `statistics` reads its receiver's."""
        now = asyncio.get_running_loop().time()
        self._watched.append(_Watched(producer, side if side in SIDES else SIDES[0], statistics,
                                      producer.frames_published, now))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Until nothing is watched: the frame counters every tick, the statistics every few."""
        loop = asyncio.get_running_loop()
        ticks = 0
        while self._watched:
            await asyncio.sleep(self.tick)
            ticks += 1
            self.sample(loop.time(), statistics=ticks % self.stats_every == 0)

    def sample(self, now: float, *, statistics: bool) -> None:
        """One look at every watched producer; a closed one is read a last time and let go."""
        for watched in list(self._watched):
            closed = watched.producer.closed
            if watched.producer.kind == "video":
                self._frames(watched, now)
            if statistics or closed:
                self._statistics(watched)
            if closed:
                self._watched.remove(watched)

    def _frames(self, watched: _Watched, now: float) -> None:
        """The frames of the tick just over, spread over it: a tick without frames leaves the
        last frame's time where it was, so the next frame's interval spans the gap."""
        frames = watched.producer.frames_published
        new, watched.frames = frames - watched.frames, frames
        for duration in watched.freezes.frames(new, watched.frames_read_at, now):
            self.freezes[watched.side].observe(duration)
        watched.frames_read_at = now

    def _statistics(self, watched: _Watched) -> None:
        key = (watched.producer.kind, watched.side)
        for stream in watched.statistics():
            received0, expected0 = watched.last.get(stream.ssrc, (0, 0))
            received = stream.packets_received - received0
            expected = stream.packets_expected - expected0
            watched.last[stream.ssrc] = (stream.packets_received, stream.packets_expected)
            if received <= 0 and expected <= 0:
                continue  # nothing arrived this interval: no loss or jitter to speak of
            lost = max(0, expected - received)
            self.packets_received[key] += max(0, received)
            self.packets_lost[key] += lost
            self.loss[key].observe(lost / expected if expected > 0 else 0.0)
            self.jitter[key].observe(stream.jitter_seconds)

    @property
    def streams_watched(self) -> int:
        return len(self._watched)

    @property
    def video_freezes(self) -> dict[str, int]:
        return {side: sum(h.counts) for side, h in self.freezes.items()}

    async def close(self) -> None:
        """A last look (the final counts of streams that just closed), then no more."""
        if self._watched:
            self.sample(asyncio.get_running_loop().time(), statistics=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
