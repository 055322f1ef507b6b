"""The router object model: fan-out without touching bytes, bounded consumers, keyframe
requests (throttled, repeated until a keyframe comes), and privilege as structure (P1)."""

from __future__ import annotations

import asyncio

import pytest

from sfu.router import EncodedFrame, KeyFrameRequestManager, PrivilegeViolationError, Router, vp8_is_keyframe

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])  # VP8 frame tag with the key-frame bit clear
DELTA = bytes([0x31, 0x02, 0x00, 0xAA])


def frame(data: bytes, ts: int, *, kind: str = "video") -> EncodedFrame:
    return EncodedFrame(kind=kind, data=data, timestamp=ts, clock_rate=90000 if kind == "video" else 48000,  # type: ignore[arg-type]
                        keyframe=vp8_is_keyframe(data) if kind == "video" else True, received_at=0.0)


class PliCounter:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def test_vp8_keyframe_flag() -> None:
    assert vp8_is_keyframe(KEY) and not vp8_is_keyframe(DELTA) and not vp8_is_keyframe(b"")


async def test_frames_reach_every_other_consumer_byte_for_byte() -> None:
    router = Router("v1", privileged=False)
    plis = PliCounter()
    video = router.add_producer("visitor", "video", plis)
    audio = router.add_producer("visitor", "audio", plis)
    assert router.producers == [video, audio] and {p.participant_id for p in router.producers} == {"visitor"}
    v = router.consume(video, "resident-v", "peer")
    a = router.consume(audio, "resident-a", "peer")
    sent = [frame(KEY, 0), frame(DELTA, 3000), frame(DELTA, 6000)]
    for f in sent:
        video.publish(f)
    audio.publish(frame(b"\xfc\x01opus", 960, kind="audio"))
    got = [await v.next_frame() for _ in sent]
    assert [g.data for g in got] == [f.data for f in sent]
    assert all(g is f for g, f in zip(got, sent, strict=True))  # the very same objects: no copy, no re-encode
    assert (await a.next_frame()).data == b"\xfc\x01opus"
    await router.close()


async def test_a_late_video_consumer_waits_for_a_keyframe_and_asks_for_it_once_per_interval() -> None:
    router = Router("v1", privileged=False)
    plis = PliCounter()
    video = router.add_producer("visitor", "video", plis)
    video.keyframes.min_interval = 0.05
    late = router.consume(video, "monitor-1", "peer")
    for n in range(20):  # deltas only: all dropped, keyframe requested but throttled
        video.publish(frame(DELTA, n * 3000))
    await asyncio.sleep(0.12)
    assert late.frames_dropped == 20 and late.frames_delivered == 0
    assert 2 <= plis.count <= 4  # repeated every 50 ms until a keyframe, never once per frame
    video.publish(frame(KEY, 99000))
    video.publish(frame(DELTA, 102000))
    assert (await late.next_frame()).keyframe
    sent_before = plis.count
    await asyncio.sleep(0.12)
    assert plis.count == sent_before  # the keyframe arrived: no more PLIs
    await router.close()


async def test_keyframe_requests_are_throttled_to_one_per_interval() -> None:
    plis = PliCounter()
    manager = KeyFrameRequestManager(plis, min_interval=0.5)
    for _ in range(100):
        manager.request()
    await asyncio.sleep(0.05)
    assert plis.count == 1
    manager.keyframe_received()
    await manager.close()


async def test_a_slow_consumer_loses_frames_not_memory_and_resumes_at_a_keyframe() -> None:
    router = Router("v1", privileged=False)
    plis = PliCounter()
    video = router.add_producer("visitor", "video", plis)
    slow = video.add_consumer("slow", "peer", max_queue=8)
    video.publish(frame(KEY, 0))
    for n in range(1, 30):
        video.publish(frame(DELTA, n * 3000))
    assert len(slow._queue) <= 8 and slow.waiting_for_keyframe and slow.frames_dropped > 0
    video.publish(frame(KEY, 31 * 3000))
    assert (await slow.next_frame()).keyframe
    await router.close()


async def test_audio_never_waits_for_keyframes() -> None:
    router = Router("v1", privileged=False)
    audio = router.add_producer("visitor", "audio", PliCounter())
    consumer = router.consume(audio, "c", "peer")
    audio.publish(frame(b"\x01", 960, kind="audio"))
    assert (await consumer.next_frame()).data == b"\x01"
    await router.close()


async def test_p1_a_privileged_router_refuses_recorders_and_monitors_whoever_asks() -> None:
    refused: list[tuple[str, str]] = []
    router = Router("attorney-visit", privileged=True, on_refusal=lambda cid, role: refused.append((cid, role)))
    video = router.add_producer("attorney", "video", PliCounter())
    with pytest.raises(PrivilegeViolationError, match="P1"):
        router.consume(video, "recorder-1", "recorder")
    with pytest.raises(PrivilegeViolationError):
        router.consume(video, "officer-7", "monitor")
    assert refused == [("recorder-1", "recorder"), ("officer-7", "monitor")]
    assert video.consumers == []
    peer = router.consume(video, "resident", "peer")  # the two participants still see each other
    assert peer.role == "peer"
    await router.close()


async def test_closing_a_router_ends_its_consumers() -> None:
    router = Router("v1", privileged=False)
    video = router.add_producer("visitor", "video", PliCounter())
    consumer = router.consume(video, "c", "peer")
    waiter = asyncio.create_task(consumer.next_frame())
    await asyncio.sleep(0)
    await router.close()
    from sfu.router import ConsumerClosedError

    with pytest.raises(ConsumerClosedError):
        await waiter


class Sink:
    """A sender as a consumer's sink sees it: it cannot send until `connected`."""

    def __init__(self) -> None:
        self.connected = False
        self.sent: list[EncodedFrame] = []

    def __call__(self, f: EncodedFrame) -> bool:
        if self.connected:
            self.sent.append(f)
        return self.connected


async def test_a_sink_gets_each_frame_at_once_and_video_waits_from_a_keyframe_until_it_connects() -> None:
    router = Router("v-sink", privileged=False)
    video = router.add_producer("visitor", "video", PliCounter())
    audio = router.add_producer("visitor", "audio", PliCounter())
    v, a = router.consume(video, "resident-v", "peer"), router.consume(audio, "resident-a", "peer")
    v_sink, a_sink = Sink(), Sink()
    v.sink, a.sink = v_sink, a_sink
    video.publish(frame(DELTA + b"0", 0))  # before any keyframe: useless, dropped
    video.publish(frame(KEY + b"1", 3000))  # held (the sink's connection is not up yet)...
    video.publish(frame(DELTA + b"2", 6000))  # ...with what follows it
    video.publish(frame(KEY + b"3", 9000))  # a newer keyframe: the older picture is no use any more
    video.publish(frame(DELTA + b"4", 12000))
    audio.publish(frame(b"opus-0", 0, kind="audio"))  # stale audio is not held
    assert v_sink.sent == [] and v.frames_delivered == 0
    v_sink.connected = a_sink.connected = True
    video.publish(frame(DELTA + b"5", 15000))
    audio.publish(frame(b"opus-1", 960, kind="audio"))
    assert [f.data[-1:] for f in v_sink.sent] == [b"3", b"4", b"5"]  # from the newest keyframe, in order
    assert [f.data for f in a_sink.sent] == [b"opus-1"]
    assert v.frames_delivered == 3 and v.last_frame is v_sink.sent[-1] and v.frames_dropped == 3
    video.publish(frame(DELTA + b"6", 18000))  # connected: straight through, nothing queued
    assert v_sink.sent[-1].data.endswith(b"6")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(v.next_frame(), 0.05)
    await router.close()


async def test_a_sink_that_never_connects_holds_a_bounded_amount_of_video() -> None:
    router = Router("v-sink-2", privileged=False)
    video = router.add_producer("visitor", "video", PliCounter())
    consumer = video.add_consumer("resident-v", "peer", max_queue=8)
    consumer.sink = Sink()
    video.publish(frame(KEY, 0))
    for n in range(1, 12):
        video.publish(frame(DELTA, 3000 * n))
    assert consumer.waiting_for_keyframe and consumer.frames_dropped >= 9
    await router.close()


async def test_a_consumer_that_takes_over_an_id_survives_the_close_of_the_one_it_replaced() -> None:
    """Two parties joining at the same moment can attach the same consumer id twice (one from the
    producer's arrival, one from the joiner's own setup); closing the replaced one must not
    silently unhook its successor (that left one party without the other's media)."""
    router = Router("v1", privileged=False)
    video = router.add_producer("visitor", "video", PliCounter())
    first = router.consume(video, "resident-video", "peer")
    second = router.consume(video, "resident-video", "peer")
    first.close()
    assert video.consumers == [second]
    video.publish(frame(KEY, 0))
    assert (await second.next_frame()).data == KEY
    await router.close()
