"""The SFU's received-media quality metrics (issue 16): loss, jitter and freezes across streams,
sampled on a timer, and what /metrics shows of them after a real visit on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from control_api.app import start_site
from control_api.metrics import ApiMetrics
from openvisit.join_tokens import JoinTokenSigner, JoinTokenVerifier
from sfu.media_quality import MediaQuality
from sfu.metrics import media_quality_metrics
from sfu.node import create_media_node_app
from sfu.router.frames import Kind
from tests.sfu.test_signaling import Stack, connect, now
from tests.support_events import InProcessEventSink

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "openvisit.json"


@dataclass
class FakeProducer:
    kind: Kind
    frames_published: int = 0
    closed: bool = False


@dataclass(frozen=True)
class Counts:
    ssrc: int
    packets_received: int
    packets_expected: int
    jitter_seconds: float


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found[name, tuple(sorted(labels.items()))]


async def test_loss_per_interval_packet_counters_and_jitter_by_kind_and_side() -> None:
    quality = MediaQuality()
    audio = FakeProducer("audio")
    counts = [Counts(11, 0, 0, 0.0)]
    quality.watch(audio, "visitor", lambda: counts)
    counts[:] = [Counts(11, 100, 100, 0.004)]
    quality.sample(1.0, statistics=True)
    counts[:] = [Counts(11, 190, 200, 0.012)]  # 10 of the next 100 lost
    quality.sample(2.0, statistics=True)
    counts[:] = [Counts(11, 190, 200, 0.012)]  # nothing arrived: no interval to judge
    quality.sample(3.0, statistics=True)
    found = samples(generate_latest_of(quality))
    assert value(found, "openvisit_sfu_packets_received_total", kind="audio", side="visitor") == 190
    assert value(found, "openvisit_sfu_packets_lost_total", kind="audio", side="visitor") == 10
    assert value(found, "openvisit_sfu_packets_received_total", kind="video", side="resident") == 0
    loss = "openvisit_sfu_packet_loss_ratio"
    assert value(found, f"{loss}_count", kind="audio", side="visitor") == 2
    assert value(found, f"{loss}_bucket", kind="audio", side="visitor", le="0.0") == 1
    assert value(found, f"{loss}_bucket", kind="audio", side="visitor", le="0.05") == 1
    assert value(found, f"{loss}_bucket", kind="audio", side="visitor", le="0.1") == 2
    jitter = "openvisit_sfu_jitter_seconds"
    assert value(found, f"{jitter}_sum", kind="audio", side="visitor") == 0.016
    assert value(found, f"{jitter}_bucket", kind="audio", side="visitor", le="0.005") == 1
    await quality.close()


async def test_freezes_of_forwarded_video_from_its_frame_counter() -> None:
    """Ticks of 100 ms: 3 frames each is 30 fps; half a second without a frame is one freeze."""
    quality = MediaQuality()
    video = FakeProducer("video")
    t = asyncio.get_running_loop().time()  # the sampler's clock
    quality.watch(video, "resident", list)
    for tick in range(40):
        t += 0.1
        if not 20 <= tick < 25:
            video.frames_published += 3
        quality.sample(t, statistics=False)
    video.closed = True
    quality.sample(t + 0.1, statistics=False)
    found = samples(generate_latest_of(quality))
    assert value(found, "openvisit_sfu_video_freezes_total", side="resident") == 1
    assert value(found, "openvisit_sfu_video_freezes_total", side="visitor") == 0
    assert 0.5 <= value(found, "openvisit_sfu_video_freeze_seconds_sum", side="resident") <= 0.6
    assert value(found, "openvisit_sfu_video_freeze_seconds_bucket", side="resident", le="1.0") == 1
    assert quality.streams_watched == 0  # a closed producer is let go
    await quality.close()


class _QualityCollector(Collector):
    def __init__(self, quality: MediaQuality) -> None:
        self.quality = quality

    def collect(self) -> Iterator[Metric]:
        yield from media_quality_metrics(self.quality)


def generate_latest_of(quality: MediaQuality) -> str:
    registry = CollectorRegistry()
    registry.register(_QualityCollector(quality))
    return generate_latest(registry).decode()


def test_the_api_registry_has_the_process_metrics_once() -> None:
    """The embedded media plane adds its collectors to this registry: one /metrics per process,
    the process's CPU counted once."""
    text = generate_latest(ApiMetrics().registry).decode()
    assert text.count("# TYPE process_cpu_seconds_total counter") == 1
    assert "python_info{" in text and "process_resident_memory_bytes" in text


async def test_a_real_visit_shows_loss_jitter_freezes_and_cpu_on_the_nodes_metrics(loopback_only: None) -> None:
    """Two aiortc parties on loopback for a few seconds: every stream sampled, nothing lost,
    jitter small, no freeze; the node's process CPU beside them."""
    key = Ed25519PrivateKey.generate()
    events = InProcessEventSink()
    app, sfu = create_media_node_app(JoinTokenVerifier(key.public_key()), events)
    runner, port = await start_site(app, "127.0.0.1", 0)
    stack = Stack(f"ws://127.0.0.1:{port}/v1/signaling", sfu, events, JoinTokenSigner(key))
    start, end = now() - timedelta(seconds=1), now() + timedelta(minutes=5)
    visitor = await connect(stack, stack.token("visit-q", "user-1", "visitor", start=start, end=end))
    resident = await connect(stack, stack.token("visit-q", "resident-9", "resident", start=start, end=end))
    try:
        for _ in range(100):  # over 3 s of video each way: at least one 2 s statistics interval
            if len(visitor.received["video"]) >= 100 and len(resident.received["video"]) >= 100:
                break
            await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            found = samples(await resp.text())
    finally:
        await visitor.close()
        await resident.close()
        await sfu.close()
        await runner.cleanup()
    assert value(found, "process_cpu_seconds_total") > 0
    for kind in ("audio", "video"):
        for side in ("visitor", "resident"):
            assert value(found, "openvisit_sfu_packets_received_total", kind=kind, side=side) > 50
            assert value(found, "openvisit_sfu_packets_lost_total", kind=kind, side=side) == 0
            intervals = value(found, "openvisit_sfu_packet_loss_ratio_count", kind=kind, side=side)
            assert intervals >= 1
            assert value(found, "openvisit_sfu_packet_loss_ratio_bucket", kind=kind, side=side, le="0.0") == intervals
            jitter = value(found, "openvisit_sfu_jitter_seconds_sum", kind=kind, side=side) / intervals
            assert 0 <= jitter < 0.03, (kind, side, jitter)
    for side in ("visitor", "resident"):
        assert value(found, "openvisit_sfu_video_freezes_total", side=side) == 0
    # Every media-plane and process series the Grafana dashboard graphs is exported by a node.
    exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]]
    graphed = {name for expr in exprs for name in re.findall(r"\b(?:openvisit_sfu_(?!recordings)|process_)\w+", expr)}
    assert {"openvisit_sfu_packets_lost_total", "openvisit_sfu_video_freezes_total"} <= graphed
    assert graphed <= {name for name, _labels in found}, graphed - {name for name, _labels in found}
