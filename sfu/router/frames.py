"""An encoded media frame as the router moves it: never decoded, never re-encoded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["audio", "video"]


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~3x, and there is one per frame
class EncodedFrame:
    kind: Kind
    data: bytes  # the codec payload (VP8 frame, Opus packet), byte for byte as published
    timestamp: int  # in the codec clock (90 kHz video, 48 kHz Opus)
    clock_rate: int
    keyframe: bool  # always True for audio
    received_at: float  # time.monotonic() when the frame was complete, for latency metrics


def vp8_is_keyframe(payload: bytes) -> bool:
    """RFC 6386 §9.1: bit 0 of the frame tag is 0 for a key frame."""
    return bool(payload) and (payload[0] & 0x01) == 0
