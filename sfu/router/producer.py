"""A Producer: one published track (a participant's audio or video), fanned out to consumers.

With a fast path (`sfu.router.fast_path`), frames skip Python whenever `sfu.router.bypass` allows:
the producer asks that rule after each frame it published, and sends every frame through Python
again (`reroute`) whenever one of the rule's inputs changes. Its consumers tell it so through
`ConsumerListener.bypass_changed`; its own inputs (the fast path, the consumers, a keyframe asked
for, `bypass_allowed`, closing) change only through the methods and setters below, which reroute.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from sfu.router.bypass import bypass_outputs
from sfu.router.consumer import Consumer, ConsumerRole
from sfu.router.fast_path import FastPath
from sfu.router.frames import EncodedFrame, Kind
from sfu.router.keyframes import KeyFrameRequestManager, SendPli


class Producer:
    def __init__(self, producer_id: str, participant_id: str, kind: Kind, send_pli: SendPli,
                 *, pli_interval: float = 0.5) -> None:
        self.id = producer_id
        self.participant_id = participant_id
        self.kind = kind
        self.keyframes = KeyFrameRequestManager(send_pli, min_interval=pli_interval)
        self._consumers: dict[str, Consumer] = {}
        self._fan_out: tuple[Consumer, ...] = ()  # the consumers, as publish() iterates them
        self._frames_published = 0  # through publish(); the fast path counts its own
        self._bytes_published = 0
        self._fast_path: FastPath | None = None
        self._closed = False
        self._bypass_allowed = True
        # Bandwidth: the slowest receiver's estimate is relayed upstream so the publisher's encoder
        # adapts (a visitor on a weak link gets degraded video, not a dropped visit).
        self.send_bitrate_limit: Callable[[int], Coroutine[Any, Any, None]] | None = None
        self._last_limit_sent: int | None = None
        self._incoming_bitrate: int | None = None  # bits/s over the last two seconds or so
        self._window_start = 0.0
        self._window_bytes = 0

    @property
    def frames_published(self) -> int:
        fast = self._fast_path
        return self._frames_published + (fast.fast_frames if fast is not None else 0)

    @property
    def bytes_published(self) -> int:
        fast = self._fast_path
        return self._bytes_published + (fast.fast_bytes if fast is not None else 0)

    @property
    def fast_frames(self) -> int:
        """Frames the fast path sent past Python, since the start."""
        fast = self._fast_path
        return fast.fast_frames if fast is not None else 0

    @property
    def incoming_bitrate(self) -> int | None:
        fast = self._fast_path
        return fast.incoming_bitrate if fast is not None else self._incoming_bitrate

    @property
    def fast_path(self) -> FastPath | None:
        return self._fast_path

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def bypass_allowed(self) -> bool:
        """False: every frame goes through Python (the room's gate), whatever the consumers."""
        return self._bypass_allowed

    @bypass_allowed.setter
    def bypass_allowed(self, allowed: bool) -> None:
        self._bypass_allowed = allowed
        self.reroute()

    def attach_fast_path(self, fast_path: FastPath) -> None:
        """Frames may bypass Python through `fast_path` whenever `route_if_clear` finds it safe."""
        self.reroute()
        self._fast_path = fast_path

    def bypass_changed(self) -> None:
        """A consumer's input to the bypass rule changed (`ConsumerListener`)."""
        self.reroute()

    def reroute(self) -> None:
        """Something changed (a consumer came, went, wants a keyframe, lost bandwidth): every frame
        goes through publish() again until route_if_clear() finds the way clear."""
        fast = self._fast_path
        if fast is None:
            return
        fast.route(None)
        for consumer in self._fan_out:
            consumer.bypass_ended()

    def route_if_clear(self) -> None:
        """After a frame went through publish(): if `sfu.router.bypass` finds that no one needs to
        see the next ones, let them bypass."""
        fast = self._fast_path
        if fast is None or fast.routed:
            return
        consumers = self._fan_out
        outputs = bypass_outputs(allowed=self._bypass_allowed, closed=self._closed,
                                 keyframe_pending=self.keyframes.pending, consumers=consumers)
        if outputs is None:
            return
        base = fast.fast_frames
        for consumer in consumers:
            consumer.bypass_started(base)
        fast.route(outputs)

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def add_consumer(self, consumer_id: str, role: ConsumerRole, *, max_queue: int = 64) -> Consumer:
        consumer = Consumer(consumer_id, self, role, max_queue=max_queue)
        self._consumers[consumer_id] = consumer
        self._fan_out_changed()
        if self.kind == "video":
            self.request_keyframe()  # a late joiner sees video at the next keyframe, asked for now
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        if self._consumers.get(consumer.id) is consumer:  # not a newer consumer that took over its id
            del self._consumers[consumer.id]
        self._fan_out_changed()

    def _fan_out_changed(self) -> None:
        self.reroute()  # before the new fan-out: the consumers bypassed so far keep their counts
        self._fan_out = tuple(self._consumers.values())

    def bitrate_limit(self) -> int | None:
        estimates = [c.downstream_bitrate for c in self._consumers.values() if c.downstream_bitrate]
        return min(estimates) if estimates else None

    def downstream_changed(self) -> None:
        limit = self.bitrate_limit()
        if limit is None or self.send_bitrate_limit is None:
            return
        last = self._last_limit_sent
        if last is None or abs(limit - last) > 0.1 * last:  # only meaningful changes go upstream
            self._last_limit_sent = limit
            asyncio.get_running_loop().create_task(self.send_bitrate_limit(limit))

    def publish(self, frame: EncodedFrame) -> None:
        self._frames_published += 1
        self._bytes_published += len(frame.data)
        if self._fast_path is None:  # the fast path measures every frame itself
            elapsed = frame.received_at - self._window_start
            if elapsed >= 2.0:
                if self._window_start:
                    self._incoming_bitrate = int(self._window_bytes * 8 / elapsed)
                self._window_start, self._window_bytes = frame.received_at, 0
            self._window_bytes += len(frame.data)
        if frame.keyframe and self.kind == "video":
            self.keyframes.keyframe_received()
        for consumer in self._fan_out:
            consumer.deliver(frame)
        if self._fast_path is not None:
            self.route_if_clear()

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self._closed:
            self.reroute()  # a keyframe pending: it must be seen here (keyframe_received)
            self.keyframes.request()

    async def close(self) -> None:
        self.reroute()
        self._closed = True
        for consumer in list(self._consumers.values()):
            consumer.close()
        await self.keyframes.close()
