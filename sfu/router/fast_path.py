"""FastPath: a producer's frames forwarded below Python, while nothing needs to look at them.

In steady state a consumer only hands each frame to its sender: nothing waits for a keyframe,
no link is too weak, no sink is still connecting. Then the adapter (`sfu.aiortc_adapter`, in C)
can send each frame to every consumer's sender from the very call that assembled it, and the
interpreter never sees it. When that is allowed is decided in one place (`sfu.router.bypass`),
asked by the producer after each frame it did see (`Producer.route_if_clear`); every change to
what that rule reads notifies the producer, which routes every frame through Python again
(`Producer.reroute`). The fast path itself hands a frame back to Python whenever one of its
senders cannot send.

The router stays free of aiortc: this protocol is all it knows of the C path.
"""

from __future__ import annotations

from typing import Protocol


class FastPath(Protocol):
    @property
    def routed(self) -> bool:
        """Frames go straight to the outputs now (False after `route(None)`, or when the fast path
        handed a frame back because an output could not send it)."""

    @property
    def fast_frames(self) -> int:
        """Frames sent without Python, since the start."""

    @property
    def fast_bytes(self) -> int: ...

    @property
    def incoming_bitrate(self) -> int | None:
        """Bits/s of every frame received, over windows of about two seconds."""

    def route(self, outputs: tuple[object, ...] | None, /) -> None:
        """Send every frame to these outputs (consumers' `output`s); None: every frame to Python."""
