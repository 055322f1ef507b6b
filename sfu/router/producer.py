"""A Producer: one published track (a participant's audio or video), fanned out to consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from sfu.router.consumer import Consumer, ConsumerRole
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
        self.frames_published = 0
        self.bytes_published = 0
        self.closed = False
        # Bandwidth: the slowest receiver's estimate is relayed upstream so the publisher's encoder
        # adapts (a visitor on a weak link gets degraded video, not a dropped visit).
        self.send_bitrate_limit: Callable[[int], Coroutine[Any, Any, None]] | None = None
        self._last_limit_sent: int | None = None
        self.incoming_bitrate: int | None = None  # bits/s over the last two seconds or so
        self._window_start = 0.0
        self._window_bytes = 0

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    def add_consumer(self, consumer_id: str, role: ConsumerRole, *, max_queue: int = 64) -> Consumer:
        consumer = Consumer(consumer_id, self, role, max_queue=max_queue)
        self._consumers[consumer_id] = consumer
        self._fan_out = tuple(self._consumers.values())
        if self.kind == "video":
            self.request_keyframe()  # a late joiner sees video at the next keyframe, asked for now
        return consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer.id, None)
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
        self.frames_published += 1
        self.bytes_published += len(frame.data)
        elapsed = frame.received_at - self._window_start
        if elapsed >= 2.0:
            if self._window_start:
                self.incoming_bitrate = int(self._window_bytes * 8 / elapsed)
            self._window_start, self._window_bytes = frame.received_at, 0
        self._window_bytes += len(frame.data)
        if frame.keyframe and self.kind == "video":
            self.keyframes.keyframe_received()
        for consumer in self._fan_out:
            consumer.deliver(frame)

    def request_keyframe(self) -> None:
        if self.kind == "video" and not self.closed:
            self.keyframes.request()

    async def close(self) -> None:
        self.closed = True
        for consumer in list(self._consumers.values()):
            consumer.close()
        await self.keyframes.close()
