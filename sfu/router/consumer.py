"""A Consumer: one receiver of one producer's frames (a peer, a recorder or a monitor).

Its queue is bounded: a slow consumer loses frames, not memory. For video it then drops until
the next keyframe (a decoder cannot use deltas after a gap) and asks the producer for one.
A video consumer whose receiver's link cannot carry the video forwards keyframes only
(`VideoThinning`), so that receiver keeps its audio.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Literal

from sfu.router.frames import EncodedFrame
from sfu.router.video_thinning import VideoThinning

if TYPE_CHECKING:
    from sfu.router.producer import Producer

ConsumerRole = Literal["peer", "recorder", "monitor"]


class ConsumerClosedError(Exception):
    pass


class Consumer:
    def __init__(self, consumer_id: str, producer: Producer, role: ConsumerRole, *, max_queue: int = 64) -> None:
        self.id = consumer_id
        self.producer = producer
        self.role = role
        self.kind = producer.kind
        self.max_queue = max_queue
        self._queue: collections.deque[EncodedFrame] = collections.deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.waiting_for_keyframe = self.kind == "video"
        self.frames_delivered = 0
        self.frames_dropped = 0
        self.frames_thinned = 0
        self.thinning = VideoThinning() if self.kind == "video" else None
        self.last_frame: EncodedFrame | None = None
        self.downstream_bitrate: int | None = None  # the receiver's REMB estimate, bits per second

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver(self, frame: EncodedFrame) -> None:
        """Called by the producer for every frame, on the event loop. Never blocks."""
        if self._closed:
            return
        thinning = self.thinning
        if thinning is not None and thinning.active:
            if thinning.probe_due(frame.received_at):
                self.waiting_for_keyframe = True  # full video again, from the next keyframe
            elif not frame.keyframe:
                self.frames_thinned += 1
                if thinning.keyframe_wanted(frame.received_at):
                    self.producer.request_keyframe()
                return
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                self.producer.request_keyframe()
                return
            self.waiting_for_keyframe = False
        if len(self._queue) >= self.max_queue:
            self.frames_dropped += len(self._queue)
            self._queue.clear()
            if self.kind == "video" and not frame.keyframe:
                self.waiting_for_keyframe = True
                self.frames_dropped += 1
                self.producer.request_keyframe()
                return
        self._queue.append(frame)
        self._ready.set()

    def request_keyframe(self) -> None:
        """The receiving side reported loss (its PLI): resume from the next keyframe."""
        if self.kind == "video":
            self.producer.request_keyframe()

    def report_bandwidth(self, bitrate: int) -> None:
        """The receiving side's estimate of what its link carries (REMB); relayed to the publisher."""
        self.downstream_bitrate = bitrate
        if self.thinning is not None:
            self.thinning.on_estimate(time.monotonic(), bitrate, self.producer.incoming_bitrate)
        self.producer.downstream_changed()

    async def next_frame(self) -> EncodedFrame:
        while not self._queue:
            if self._closed:
                raise ConsumerClosedError(self.id)
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        self.frames_delivered += 1
        self.last_frame = frame
        return frame

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self.producer.remove_consumer(self)
