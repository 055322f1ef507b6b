"""Pass/fail thresholds an SRE sets on the command line, checked against Locust's statistics when
the run ends (on the master in a distributed run, where the workers' samples are aggregated).
Media samples are Locust requests of type `media` (loadtests/locustfile.py); the API thresholds
use every other request type except `visit` (the per-visit outcome)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MEDIA = "media"
VISIT = "visit"
NOT_API = {MEDIA, VISIT}

JOIN = "join http ms"
ICE = "ice connected ms"
FIRST_FRAME = "first frame ms"
FPS = "fps"
LOSS = "loss 0.01%"  # basis points: Locust keeps integer samples, and 0.5 % must not read as 0
JITTER = "jitter ms"
FREEZES = "freezes"
FREEZE_MS = "freeze ms"
BITRATE = "bitrate kbps"
MONITOR_FIRST_FRAME = "monitor first frame ms"
OUTCOME = "outcome"


class Entry(Protocol):
    @property
    def num_requests(self) -> int: ...
    @property
    def num_failures(self) -> int: ...
    @property
    def avg_response_time(self) -> float: ...

    def get_response_time_percentile(self, percent: float) -> float: ...


@dataclass(frozen=True)
class Limits:
    max_join_p95_ms: float | None = None
    max_first_frame_p95_ms: float | None = None
    max_loss_pct: float | None = None
    min_fps: float | None = None
    max_api_p95_ms: float | None = None
    max_error_rate_pct: float | None = None

    @classmethod
    def from_options(cls, options: Any) -> Limits:
        return cls(max_join_p95_ms=options.max_join_p95_ms, max_first_frame_p95_ms=options.max_first_frame_p95_ms,
                   max_loss_pct=options.max_loss_pct, min_fps=options.min_fps, max_api_p95_ms=options.max_api_p95_ms,
                   max_error_rate_pct=options.max_error_rate_pct)


def add_arguments(parser: Any) -> None:
    group = parser.add_argument_group("openvisit thresholds (exit code 1 when one is missed)")
    group.add_argument("--max-join-p95-ms", type=float, default=None, help="p95 of the HTTP join request")
    group.add_argument("--max-first-frame-p95-ms", type=float, default=None,
                       help="p95 of join request to the other party's first video frame")
    group.add_argument("--max-loss-pct", type=float, default=None, help="mean RTP packet loss per party, percent")
    group.add_argument("--min-fps", type=float, default=None, help="mean received video frames per second")
    group.add_argument("--max-api-p95-ms", type=float, default=None, help="p95 over all API requests")
    group.add_argument("--max-error-rate-pct", type=float, default=None,
                       help="failed requests and failed visits over all of them, percent")


def violations(limits: Limits, entries: Mapping[tuple[str, str], Entry], total: Entry) -> list[str]:
    """Every threshold missed, as a sentence; an empty list passes. `entries` is keyed like
    Locust's `stats.entries`: (name, request type). A metric with no samples misses its threshold
    (a load test that measured nothing has not passed)."""
    out: list[str] = []

    def media(name: str) -> Entry | None:
        entry = entries.get((name, MEDIA))
        return entry if entry is not None and entry.num_requests else None

    def check(label: str, name: str, value_of: str, limit: float | None, *, upper: bool, scale: float = 1) -> None:
        if limit is None:
            return
        entry = media(name)
        if entry is None:
            out.append(f"{label}: no samples")
            return
        value = (entry.get_response_time_percentile(0.95) if value_of == "p95" else entry.avg_response_time) * scale
        if (value > limit) if upper else (value < limit):
            out.append(f"{label} {value:.2f} {'>' if upper else '<'} {limit:g}")

    check("join p95 ms", JOIN, "p95", limits.max_join_p95_ms, upper=True)
    check("first frame p95 ms", FIRST_FRAME, "p95", limits.max_first_frame_p95_ms, upper=True)
    check("loss %", LOSS, "mean", limits.max_loss_pct, upper=True, scale=0.01)
    check("fps", FPS, "mean", limits.min_fps, upper=False)
    if limits.max_api_p95_ms is not None:
        p95 = api_p95(entries)
        if p95 is None:
            out.append("API p95 ms: no samples")
        elif p95 > limits.max_api_p95_ms:
            out.append(f"API p95 ms {p95:.0f} > {limits.max_api_p95_ms:g}")
    if limits.max_error_rate_pct is not None:
        rate = 100.0 * total.num_failures / total.num_requests if total.num_requests else 0.0
        if rate > limits.max_error_rate_pct:
            out.append(f"error rate % {rate:.2f} > {limits.max_error_rate_pct:g}")
    return out


def api_p95(entries: Mapping[tuple[str, str], Entry]) -> float | None:
    """The p95 of every API request together (Locust's own entries merged, media left out)."""
    merged: Any = None
    for (_name, method), entry in entries.items():
        if method in NOT_API or not entry.num_requests:
            continue
        if merged is None:
            from locust.stats import StatsEntry

            merged = StatsEntry(None, "API", "", use_response_times_cache=False)  # type: ignore[arg-type]
        merged.extend(entry)
    return None if merged is None else float(merged.get_response_time_percentile(0.95))
