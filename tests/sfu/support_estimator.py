"""Samples for the REMB estimator tests (the Python speed-ups in the adapter and the C twin in
sfu/native/bitrate_estimator.c), compared with aiortc's stock estimator on the same input."""

from __future__ import annotations

import random


def estimator_samples(count: int, seed: int) -> list[tuple[int, int, int]]:
    """(arrival ms, abs-send-time, bytes) per video frame: 30 fps over a link that congests every
    other 10 s (queueing delay builds up), a keyframe every 3 s, and now and then a pause longer
    than the estimator's 1 s rate window."""
    rnd = random.Random(seed)
    send_ms, queue_ms, samples = 0.0, 0.0, []
    for i in range(count):
        send_ms += 33.3 + rnd.uniform(-2, 2)
        size = 30_000 if i % 90 == 0 else rnd.randint(800, 4000)
        bytes_per_ms = 10 if (i // 300) % 2 else 60
        queue_ms = max(0.0, queue_ms - 33.3) + size / bytes_per_ms / 10
        pause = rnd.randint(1000, 2500) if rnd.random() < 0.01 else 0
        arrival = int(send_ms + 20 + queue_ms + rnd.uniform(0, 3)) + pause
        samples.append((arrival, int(send_ms * (1 << 18) / 1000) & 0xFFFFFF, size))
    return sorted(samples)
