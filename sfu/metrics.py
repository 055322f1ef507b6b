"""Prometheus metrics for the SFU, read from live state at scrape time (nothing on the hot path
but plain integer counters the router keeps anyway)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from sfu.media_quality import MediaQuality
from sfu.service import Sfu

JOIN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class EventLoopLag:
    """How late the event loop wakes a task that asked to sleep 100 ms: media stalls show here first."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.last = 0.0
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.interval)
            self.last = max(0.0, time.monotonic() - started - self.interval)
            self.worst = max(self.worst, self.last)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class SfuCollector(Collector):
    def __init__(self, sfu: Sfu, lag: EventLoopLag | None = None) -> None:
        self.sfu = sfu
        self.lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily]:
        rooms = list(self.sfu.rooms.values())
        producers = [p for r in rooms for p in r.router.producers]
        consumers = [c for p in producers for c in p.consumers]
        yield GaugeMetricFamily("openvisit_sfu_rooms", "Live visit rooms", value=len(rooms))
        yield GaugeMetricFamily("openvisit_sfu_peers", "Connected participants",
                                value=sum(len(r.participants) for r in rooms))
        yield GaugeMetricFamily("openvisit_sfu_producers", "Published tracks", value=len(producers))
        consumer_gauge = GaugeMetricFamily("openvisit_sfu_consumers", "Receivers of tracks", labels=["role"])
        for role in ("peer", "recorder", "monitor"):
            consumer_gauge.add_metric([role], sum(1 for c in consumers if c.role == role))
        yield consumer_gauge
        yield GaugeMetricFamily("openvisit_sfu_video_thinned_consumers",
                                "Video consumers sending keyframes only because their receiver's link is too weak",
                                value=sum(1 for c in consumers if c.thinning is not None and c.thinning.active))
        stats = self.sfu.stats(live_producers=producers)
        yield CounterMetricFamily("openvisit_sfu_frames_forwarded", "Encoded frames delivered to consumers",
                                  value=stats.frames_forwarded)
        yield CounterMetricFamily("openvisit_sfu_bytes_received", "Encoded media bytes received from publishers",
                                  value=stats.bytes_received)
        yield CounterMetricFamily("openvisit_sfu_pli_sent", "Keyframe requests (RTCP PLI) sent to publishers",
                                  value=stats.plis_sent)
        yield CounterMetricFamily("openvisit_sfu_packets_retransmitted",
                                  "RTP packets sent again to participants on their NACKs (lost on their downlink)",
                                  value=stats.packets_retransmitted)
        yield CounterMetricFamily("openvisit_sfu_datagrams_refused",
                                  "RTP datagrams the SFU's sockets refused (send buffer full): lost before the network",
                                  value=stats.datagrams_refused)
        recordings = self.sfu.recordings
        if recordings is not None:  # storage failures are loud (R1): counted, and free space is watched
            counts = recordings.counters
            yield CounterMetricFamily("openvisit_sfu_recordings_failed",
                                      "Recorders stopped by a write error (disk full, I/O error)", value=counts.failed)
            yield CounterMetricFamily("openvisit_sfu_recordings_refused",
                                      "Recordings not started: free space below recordings_min_free_mb",
                                      value=counts.refused)
            yield CounterMetricFamily("openvisit_sfu_recordings_recovered",
                                      "Orphaned recording segments finalised at start (a crash left them)",
                                      value=counts.recovered)
            yield CounterMetricFamily("openvisit_sfu_recordings_damaged",
                                      "Orphaned segments that could not be remuxed (kept as *.damaged)",
                                      value=counts.damaged)
            health = recordings.health()
            if health.get("free_bytes") is not None:
                yield GaugeMetricFamily("openvisit_sfu_recordings_free_bytes", "Free bytes in the recordings folder",
                                        value=health["free_bytes"])
            yield GaugeMetricFamily("openvisit_sfu_recordings_accepting",
                                    "1 when new recordings start here (free space above the threshold)",
                                    value=1 if health.get("accepting_new_recordings") else 0)
        hist = HistogramMetricFamily("openvisit_sfu_join_to_first_frame_seconds",
                                     "From a participant's offer to the first frame forwarded to it")
        samples = self.sfu.join_to_first_frame
        buckets = [(str(b), sum(1 for s in samples if s <= b)) for b in JOIN_BUCKETS] + [("+Inf", len(samples))]
        hist.add_metric([], buckets, sum(samples))
        yield hist
        if self.lag is not None:
            yield GaugeMetricFamily("openvisit_event_loop_lag_seconds", "Event-loop lag (last 100 ms sleep)",
                                    value=self.lag.last)
        yield from media_quality_metrics(self.sfu.media_quality)


def media_quality_metrics(quality: MediaQuality) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
    """Loss, jitter and freezes of the media the SFU receives, across streams (no visit label:
    visits are many; kind and side are two values each)."""
    received = CounterMetricFamily("openvisit_sfu_packets_received",
                                   "RTP packets received from publishers (retransmissions not counted)",
                                   labels=["kind", "side"])
    lost = CounterMetricFamily("openvisit_sfu_packets_lost",
                               "RTP packets publishers sent that never arrived (before any retransmission)",
                               labels=["kind", "side"])
    loss = HistogramMetricFamily("openvisit_sfu_packet_loss_ratio",
                                 "Share of a received stream's packets lost, per 2 s interval and stream",
                                 labels=["kind", "side"])
    jitter = HistogramMetricFamily("openvisit_sfu_jitter_seconds",
                                   "Interarrival jitter of a received stream (RFC 3550), every 2 s per stream",
                                   labels=["kind", "side"])
    for (kind, side), histogram in quality.loss.items():
        labels = [kind, side]
        received.add_metric(labels, quality.packets_received[kind, side])
        lost.add_metric(labels, quality.packets_lost[kind, side])
        loss.add_metric(labels, histogram.buckets(), histogram.total)
        jitter_histogram = quality.jitter[kind, side]
        jitter.add_metric(labels, jitter_histogram.buckets(), jitter_histogram.total)
    freezes = CounterMetricFamily("openvisit_sfu_video_freezes",
                                  "Freezes of received video (WebRTC's definition: a frame interval over "
                                  "max(3 x average, average + 150 ms)), as the SFU forwards it", labels=["side"])
    durations = HistogramMetricFamily("openvisit_sfu_video_freeze_seconds",
                                      "How long each freeze of received video lasted", labels=["side"])
    for side, histogram in quality.freezes.items():
        freezes.add_metric([side], quality.video_freezes[side])
        durations.add_metric([side], histogram.buckets(), histogram.total)
    yield from (received, lost, loss, jitter, freezes, durations)


def register_process_metrics(registry: CollectorRegistry) -> None:
    """`process_cpu_seconds_total`, memory, open files (ProcessCollector), `python_info` and
    `python_gc_*` on a registry of our own (the default registry has them; ours does not). Once per
    process's /metrics: the embedded media plane shares the API's registry and does not call this."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
