"""Bypass eligibility: the one rule deciding when a producer's frames may skip Python.

A producer with a fast path (the C Tap, `sfu.router.fast_path`) may have each frame sent straight
to its consumers' outputs while no one needs to look at it: the producer is open, allows it (a
room that ended does not: its frames must meet the closed gate) and awaits no keyframe, and every
consumer only hands frames to a sender that can send them (it has an output, its sink took the
last frame, it is open, awaits no keyframe, holds no video for a connecting sink, is not thinned).
Nothing else in the SFU decides this.

Safety is by construction, not by remembered calls: every input read here notifies the producer
when it changes (the consumer's properties and its `VideoThinning` call
`ConsumerListener.bypass_changed`; the producer's own inputs go through its setters), and the
producer then sends every frame through Python until this rule, consulted after a frame Python
saw, finds the way clear again. The one decision taken elsewhere is per frame, in C: the Tap hands
a frame back to Python (and ends the route) when one of the outputs cannot send it now. The
adapter's track wiring only supplies an input: no output while someone listens to each frame sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class BypassCandidate(Protocol):
    """What the rule reads of a consumer."""

    @property
    def output(self) -> object | None:
        """The fast path's destination (the adapter's C sender), None if the frames must be seen."""

    @property
    def sink_took_last(self) -> bool:
        """The sink sent the last frame it was given: its connection is up."""

    @property
    def closed(self) -> bool: ...

    @property
    def waiting_for_keyframe(self) -> bool: ...

    @property
    def holding(self) -> bool:
        """Video held for a sink that is still connecting."""

    @property
    def thinned(self) -> bool:
        """Keyframes only, decided per frame (`VideoThinning`)."""


def consumer_clear(consumer: BypassCandidate) -> bool:
    """True if this consumer would only hand the next frame to a sink that can send it."""
    return consumer.output is not None and consumer.sink_took_last and not consumer.closed \
        and not consumer.waiting_for_keyframe and not consumer.holding and not consumer.thinned


def bypass_outputs(*, allowed: bool, closed: bool, keyframe_pending: bool,
                   consumers: Sequence[BypassCandidate]) -> tuple[object, ...] | None:
    """The outputs a producer's fast path may send every frame to, or None: through Python."""
    if not allowed or closed or keyframe_pending:
        return None
    if not all(consumer_clear(c) for c in consumers):
        return None
    return tuple(c.output for c in consumers)
