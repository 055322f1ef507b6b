"""A Consumer: one receiver of one producer's frames (a peer, a recorder or a monitor).

A consumer with a `sink` (a peer's or monitor's sender) hands it each frame synchronously, from
the callback that received the frame: forwarding costs no queue and no task switch. While the
sink cannot send yet (its connection is still coming up) video is held from the newest keyframe
and sent the moment it can. Without a sink (a recorder) frames are queued for `next_frame()`.
The queue is bounded: a slow consumer loses frames, not memory. For video it then drops until
the next keyframe (a decoder cannot use deltas after a gap) and asks the producer for one.
A video consumer whose receiver's link cannot carry the video forwards keyframes only
(`VideoThinning`), so that receiver keeps its audio.

A consumer whose sink has an `output` (the adapter's sender in C) can be bypassed: while it only
hands frames to a sink that sends them (`sfu.router.bypass` decides), its producer's fast path
sends them to the output directly (`sfu.router.fast_path`), and this consumer counts them
without seeing them. Every property that rule reads tells the producer when it changes
(`ConsumerListener.bypass_changed`), so no caller has to remember to.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Literal, Protocol

from sfu.router.frames import EncodedFrame, Kind
from sfu.router.video_thinning import VideoThinning

ConsumerRole = Literal["peer", "recorder", "monitor"]
FrameSink = Callable[[EncodedFrame], bool]  # True: sent; False: the receiving side cannot take media yet


class ConsumerClosedError(Exception):
    pass


class ConsumerListener(Protocol):
    """What a consumer needs of the producer it receives from (a `Producer`): a protocol, so the
    consumer does not depend on the producer's module."""

    @property
    def kind(self) -> Kind: ...

    @property
    def incoming_bitrate(self) -> int | None:
        """Bits/s of the published track (what thinning compares the receiver's link with)."""

    @property
    def fast_frames(self) -> int:
        """Frames the fast path sent past Python, since the start."""

    def bypass_changed(self) -> None:
        """Something `sfu.router.bypass` reads of this consumer changed."""

    def request_keyframe(self) -> None: ...

    def downstream_changed(self) -> None:
        """This consumer's receiver reported a new bandwidth estimate."""

    def remove_consumer(self, consumer: Consumer) -> None: ...


class Consumer:
    def __init__(self, consumer_id: str, producer: ConsumerListener, role: ConsumerRole, *,
                 max_queue: int = 64) -> None:
        self.id = consumer_id
        self.producer = producer
        self.role = role
        self.kind = producer.kind
        self.max_queue = max_queue
        self._queue: collections.deque[EncodedFrame] = collections.deque()
        self._held: collections.deque[EncodedFrame] = collections.deque()  # video waiting for a sink to connect
        self._ready = asyncio.Event()
        self._closed = False
        self._waiting_for_keyframe = self.kind == "video"
        self._frames_delivered = 0
        self.frames_dropped = 0
        self.frames_thinned = 0
        self.thinning = VideoThinning(on_change=producer.bypass_changed) if self.kind == "video" else None
        self.last_frame: EncodedFrame | None = None
        self.downstream_bitrate: int | None = None  # the receiver's REMB estimate, bits per second
        self._sink: FrameSink | None = None
        self._output: object | None = None  # what the producer's fast path sends to instead of sink
        self._sink_took_last = False  # the sink sent the last frame it was given (its connection is up)
        self._bypassed_from: int | None = None  # the fast path's frame count when it began to bypass us

    # ------------------------------------------------ what the bypass rule reads (each change is told)

    @property
    def output(self) -> object | None:
        return self._output

    @property
    def sink_took_last(self) -> bool:
        return self._sink_took_last

    @sink_took_last.setter
    def sink_took_last(self, took: bool) -> None:
        if took != self._sink_took_last:
            self._sink_took_last = took
            self.producer.bypass_changed()

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_for_keyframe

    @waiting_for_keyframe.setter
    def waiting_for_keyframe(self, waiting: bool) -> None:
        if waiting != self._waiting_for_keyframe:
            self._waiting_for_keyframe = waiting
            self.producer.bypass_changed()

    @property
    def holding(self) -> bool:
        return bool(self._held)

    @property
    def thinned(self) -> bool:
        thinning = self.thinning
        return thinning is not None and thinning.active

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sink(self) -> FrameSink | None:
        return self._sink

    @sink.setter
    def sink(self, sink: FrameSink | None) -> None:
        self.connect(sink, None)

    def connect(self, sink: FrameSink | None, output: object | None) -> None:
        """Frames go to `sink`; `output`, if given, is the same destination for the fast path."""
        self._sink, self._output = sink, output
        self._sink_took_last = False
        self.producer.bypass_changed()

    def _hold(self, frame: EncodedFrame) -> None:
        """Keep video for a sink that cannot send yet."""
        self._held.append(frame)
        if len(self._held) == 1:
            self.producer.bypass_changed()

    def _drop_held(self) -> int:
        """Forget the held video; how many frames that was."""
        count = len(self._held)
        self._held.clear()
        if count:
            self.producer.bypass_changed()
        return count

    # ------------------------------------------------ counting what the fast path sent for us

    @property
    def frames_delivered(self) -> int:
        base = self._bypassed_from
        return self._frames_delivered + (self.producer.fast_frames - base if base is not None else 0)

    def bypass_started(self, fast_frames: int) -> None:
        self.bypass_ended()
        self._bypassed_from = fast_frames

    def bypass_ended(self) -> None:
        """Keep the frames the fast path sent for us in our own count."""
        if self._bypassed_from is not None:
            self._frames_delivered = self.frames_delivered
            self._bypassed_from = None

    # ------------------------------------------------ frames

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
        sink = self._sink
        if sink is not None:
            if self._held:
                self._push_held(sink, frame)
            elif sink(frame):
                self._frames_delivered += 1
                self.last_frame = frame
                self.sink_took_last = True
            elif self.kind == "video" and frame.keyframe:  # not connected yet: hold the picture
                self.sink_took_last = False
                self._hold(frame)
            else:
                self.sink_took_last = False
                self.frames_dropped += 1
                self.waiting_for_keyframe = self.kind == "video"
            return
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

    def _push_held(self, sink: FrameSink, frame: EncodedFrame) -> None:
        """While the receiving side is not connected yet, video from the newest keyframe on is
        held (at most `max_queue` frames) and sent the moment it is, so the first picture does
        not wait for the publisher's next keyframe."""
        held = self._held
        if frame.keyframe:  # the newest picture replaces the held one (still holding: nothing changes)
            self.frames_dropped += len(held)
            held.clear()
        held.append(frame)
        if not sink(held[0]):
            self.sink_took_last = False
            if len(held) > self.max_queue:
                self.frames_dropped += self._drop_held()
                self.waiting_for_keyframe = True
            return
        self._count_delivered(held.popleft())
        while held:  # emptied: the bypass rule sees it after this frame, no notice needed
            frame = held.popleft()
            sink(frame)
            self._count_delivered(frame)
        self.sink_took_last = True

    def _count_delivered(self, frame: EncodedFrame) -> None:
        self._frames_delivered += 1
        self.last_frame = frame

    def request_keyframe(self) -> None:
        """The receiving side reported loss (its PLI): resume from the next keyframe."""
        if self.kind == "video":
            self.producer.request_keyframe()

    def report_bandwidth(self, bitrate: int) -> None:
        """The receiving side's estimate of what its link carries (REMB); relayed to the publisher."""
        self.downstream_bitrate = bitrate
        if self.thinning is not None:
            # Thinned (keyframes only, decided per frame here): `VideoThinning` tells the producer.
            self.thinning.on_estimate(time.monotonic(), bitrate, self.producer.incoming_bitrate)
        self.producer.downstream_changed()

    async def next_frame(self) -> EncodedFrame:
        while not self._queue:
            if self._closed:
                raise ConsumerClosedError(self.id)
            self._ready.clear()
            await self._ready.wait()
        frame = self._queue.popleft()
        self._frames_delivered += 1
        self.last_frame = frame
        return frame

    def close(self) -> None:
        self._closed = True
        self.producer.bypass_changed()
        self._ready.set()
        self.producer.remove_consumer(self)
