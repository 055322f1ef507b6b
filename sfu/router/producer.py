"""A Producer: one published track (a participant's audio or video), fanned out to consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

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
        self.fast_path: FastPath | None = None
        self.closed = False
        # Bandwidth: the slowest receiver's estimate is relayed upstream so the publisher's encoder
        # adapts (a visitor on a weak link gets degraded video, not a dropped visit).
        self.send_bitrate_limit: Callable[[int], Coroutine[Any, Any, None]] | None = None
        self._last_limit_sent: int | None = None
        self._incoming_bitrate: int | None = None  # bits/s over the last two seconds or so
        self._window_start = 0.0
        self._window_bytes = 0

    @property
    def frames_published(self) -> int:
        fast = self.fast_path
        return self._frames_published + (fast.fast_frames if fast is not None else 0)

    @property
    def bytes_published(self) -> int:
        fast = self.fast_path
        return self._bytes_published + (fast.fast_bytes if fast is not None else 0)

    @property
    def incoming_bitrate(self) -> int | None:
        fast = self.fast_path
        return fast.incoming_bitrate if fast is not None else self._incoming_bitrate

    def attach_fast_path(self, fast_path: FastPath) -> None:
        """Frames may bypass Python through `fast_path` whenever `route_if_clear` finds it safe."""
        self.reroute()
        self.fast_path = fast_path

    def reroute(self) -> None:
        """Something changed (a consumer came, went, wants a keyframe, lost bandwidth): every frame
        goes through publish() again until route_if_clear() finds the way clear."""
        fast = self.fast_path
        if fast is None:
            return
        fast.route(None)
        for consumer in self._fan_out:
            consumer.bypass_ended()

    def route_if_clear(self) -> None:
        """After a frame went through publish(): if no one needs to see the next ones (no keyframe
        awaited, every consumer just hands frames to a sender that can send), let them bypass."""
        fast = self.fast_path
        if fast is None or fast.routed or self.closed or self.keyframes.pending:
            return
        consumers = self._fan_out
        if not all(c.can_bypass() for c in consumers):
            return
        base = fast.fast_frames
        for consumer in consumers:
            consumer.bypass_started(base)
        fast.route(tuple(c.output for c in consumers))

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def add_consumer(self, consumer_id: str, role: ConsumerRole, *, max_queue: int = 64) -> Consumer:
        consumer = Consumer(consumer_id, self, role, max_queue=max_queue)
        self.reroute()
        self._consumers[consumer_id] = consumer
        self._fan_out = tuple(self._consumers.values())
        if self.kind == "video":
            self.request_keyframe()  # a late joiner sees video at the next keyframe, asked for now
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        self.reroute()
        if self._consumers.get(consumer.id) is consumer:  # not a newer consumer that took over its id
            del self._consumers[consumer.id]
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
        if self.fast_path is None:  # the fast path measures every frame itself
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
        if self.fast_path is not None:
            self.route_if_clear()

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self.closed:
            self.reroute()  # the keyframe must be seen here (keyframe_received)
            self.keyframes.request()

    async def close(self) -> None:
        self.reroute()
        self.closed = True
        for consumer in list(self._consumers.values()):
            consumer.close()
        await self.keyframes.close()
