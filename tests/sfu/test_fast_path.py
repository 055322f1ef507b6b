"""The producer's decisions about its fast path (sfu/router/fast_path.py), with a fast path that
plays the C Tap's part: frames bypass Python only while no one needs to see them, every change
that could need them reroutes, and the counters stay whole either way."""

from __future__ import annotations

import pytest

from sfu.router import EncodedFrame, Router, vp8_is_keyframe
from sfu.router.consumer import Consumer
from sfu.router.producer import Producer

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
DELTA = bytes([0x31, 0x02, 0x00, 0xAA])


class FakeFastPath:
    """What the C Tap does for a producer: while routed, frames go to the outputs and are only
    counted; a frame it cannot send goes to Python (publish) and ends the route."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.outputs: tuple[object, ...] | None = None
        self.fast_frames = 0
        self.fast_bytes = 0
        self.incoming_bitrate: int | None = 123_000
        self.sent: list[tuple[object, bytes]] = []
        self.can_send = True

    @property
    def routed(self) -> bool:
        return self.outputs is not None

    def route(self, outputs: tuple[object, ...] | None) -> None:
        self.outputs = outputs

    def frame(self, data: bytes, ts: int) -> None:
        if self.outputs is not None and not self.can_send:
            self.outputs = None
        if self.outputs is not None:
            self.fast_frames += 1
            self.fast_bytes += len(data)
            self.sent.extend((output, data) for output in self.outputs)
            return
        self.producer.publish(EncodedFrame(kind="video", data=data, timestamp=ts, clock_rate=90_000,
                                           keyframe=vp8_is_keyframe(data), received_at=0.0))


class Sink:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.connected = True

    def __call__(self, frame: EncodedFrame) -> bool:
        if self.connected:
            self.sent.append(frame.data)
        return self.connected


async def _no_pli() -> None:
    return None


def _video_route() -> tuple[Router, Producer, FakeFastPath, Consumer, Sink]:
    router = Router("v1", privileged=False)
    producer = router.add_producer("visitor", "video", _no_pli)
    fast = FakeFastPath(producer)
    producer.attach_fast_path(fast)
    consumer = router.consume(producer, "resident-video", "peer")
    sink = Sink()
    consumer.connect(sink, "resident-sender")
    return router, producer, fast, consumer, sink


async def test_frames_bypass_python_once_no_one_needs_to_see_them_and_every_frame_is_counted() -> None:
    router, producer, fast, consumer, sink = _video_route()
    fast.frame(DELTA, 1)  # the consumer waits for a keyframe, the producer asked for one
    assert not fast.routed and sink.sent == []
    fast.frame(KEY, 2)  # seen here: keyframe received, the consumer is in step
    assert fast.routed and fast.outputs == ("resident-sender",) and sink.sent == [KEY]
    for ts in range(3, 8):
        fast.frame(DELTA, ts)
    assert sink.sent == [KEY] and fast.sent == [("resident-sender", DELTA)] * 5
    assert consumer.frames_delivered == 6  # the keyframe through Python, five deltas past it
    assert producer.frames_published == 7 and producer.bytes_published == len(KEY) + 6 * len(DELTA)
    assert producer.incoming_bitrate == 123_000  # measured by the fast path over every frame
    await router.close()


async def test_a_keyframe_request_a_new_consumer_or_a_closed_one_sends_frames_through_python_again() -> None:
    router, producer, fast, consumer, sink = _video_route()
    fast.frame(KEY, 1)
    fast.frame(DELTA, 2)
    assert fast.routed
    consumer.request_keyframe()  # the subscriber lost something: the keyframe must be seen here
    assert not fast.routed and producer.keyframes.pending
    fast.frame(DELTA, 3)  # through Python: the consumer is in step, it gets the delta
    assert not fast.routed and sink.sent[-1] == DELTA
    fast.frame(KEY, 4)
    assert fast.routed
    monitor = router.consume(producer, "monitor-video", "monitor")
    assert not fast.routed  # a monitor joined: it waits for a keyframe, decided per frame
    monitor_sink = Sink()
    monitor.connect(monitor_sink, "monitor-sender")
    fast.frame(DELTA, 5)
    assert not fast.routed and monitor_sink.sent == [] and sink.sent[-1] == DELTA
    fast.frame(KEY, 6)
    assert fast.routed and fast.outputs == ("resident-sender", "monitor-sender")
    fast.frame(DELTA, 7)
    delivered = monitor.frames_delivered
    monitor.close()
    assert not fast.routed and monitor.frames_delivered == delivered == 2  # its bypassed frame kept
    fast.frame(DELTA, 8)
    assert fast.routed and fast.outputs == ("resident-sender",)
    assert consumer.frames_delivered == 8
    await router.close()


async def test_a_consumer_without_an_output_or_a_recorder_keeps_every_frame_in_python() -> None:
    router, producer, fast, consumer, sink = _video_route()
    consumer.sink = sink  # a sink with no output (someone listens to each frame sent)
    fast.frame(KEY, 1)
    fast.frame(DELTA, 2)
    assert not fast.routed and sink.sent == [KEY, DELTA]
    consumer.connect(sink, "resident-sender")
    recorder = router.consume(producer, "recorder-video", "recorder")
    fast.frame(KEY, 3)
    fast.frame(DELTA, 4)
    assert not fast.routed and sink.sent[-1] == DELTA and recorder.frames_dropped == 0
    recorder.close()
    fast.frame(DELTA, 5)
    assert fast.routed
    await router.close()


@pytest.mark.parametrize("what", ["thinned", "disconnected", "sender cannot send"])
async def test_what_needs_python_per_frame_ends_the_bypass(what: str) -> None:
    router, producer, fast, consumer, sink = _video_route()
    fast.frame(KEY, 1)
    assert fast.routed
    if what == "thinned":  # the receiver's link cannot carry the video: keyframes only, decided here
        producer._incoming_bitrate = fast.incoming_bitrate = 2_000_000
        consumer.report_bandwidth(100_000)
        assert consumer.thinning is not None and consumer.thinning.active and not fast.routed
        fast.frame(DELTA, 2)
        assert consumer.frames_thinned == 1 and not fast.routed
    elif what == "disconnected":  # the sink's connection went away: Python holds and drops
        fast.can_send = False
        sink.connected = False
        fast.frame(DELTA, 2)
        assert not fast.routed and consumer.frames_dropped == 1 and consumer.waiting_for_keyframe
        fast.frame(DELTA, 3)
        assert not fast.routed
    else:  # the C side handed the frame back (e.g. ICE switched pairs); Python sends it
        fast.can_send = False
        fast.frame(DELTA, 2)
        assert sink.sent == [KEY, DELTA]
        fast.can_send = True
        assert fast.routed  # the sink took it: the way is clear again
    await router.close()


async def test_closing_the_producer_ends_the_bypass() -> None:
    router, _producer, fast, _consumer, _sink = _video_route()
    fast.frame(KEY, 1)
    assert fast.routed
    await router.close()
    assert not fast.routed
