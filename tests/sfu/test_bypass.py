"""Bypass eligibility (sfu/router/bypass.py): the one rule deciding when a producer's frames may
skip Python, and the notices that keep the fast path safe by construction: every change to what
the rule reads reaches the producer without any caller remembering to reroute."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from sfu.router import Consumer, EncodedFrame, Router, vp8_is_keyframe
from sfu.router.bypass import bypass_outputs, consumer_clear
from sfu.router.frames import Kind

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
DELTA = bytes([0x31, 0x02, 0x00, 0xAA])


@dataclasses.dataclass
class Candidate:
    """A consumer as the rule sees it, in the state that lets frames bypass it."""

    output: object | None = "sender"
    sink_took_last: bool = True
    closed: bool = False
    waiting_for_keyframe: bool = False
    holding: bool = False
    thinned: bool = False


BLOCKERS = {"no output": {"output": None}, "sink not connected": {"sink_took_last": False},
            "closed": {"closed": True}, "waiting for a keyframe": {"waiting_for_keyframe": True},
            "holding video": {"holding": True}, "thinned": {"thinned": True}}


def test_a_consumer_in_step_with_a_connected_output_is_clear() -> None:
    assert consumer_clear(Candidate())
    assert bypass_outputs(allowed=True, closed=False, keyframe_pending=False,
                          consumers=[Candidate(output="a"), Candidate(output="b")]) == ("a", "b")


@pytest.mark.parametrize("blocker", BLOCKERS)
def test_each_thing_a_consumer_must_see_keeps_every_frame_in_python(blocker: str) -> None:
    blocked = Candidate(**BLOCKERS[blocker])  # type: ignore[arg-type]
    assert not consumer_clear(blocked)
    assert bypass_outputs(allowed=True, closed=False, keyframe_pending=False,
                          consumers=[Candidate(), blocked]) is None


@pytest.mark.parametrize("producer_state", [{"allowed": False}, {"closed": True}, {"keyframe_pending": True}])
def test_a_producer_that_must_see_its_frames_refuses_the_bypass(producer_state: dict[str, bool]) -> None:
    state = {"allowed": True, "closed": False, "keyframe_pending": False, **producer_state}
    assert bypass_outputs(consumers=[Candidate()], **state) is None


class Listener:
    """Plays the producer: counts the notices a consumer sends it."""

    def __init__(self, kind: Kind = "video") -> None:
        self.kind: Kind = kind
        self.incoming_bitrate: int | None = 2_000_000
        self.fast_frames = 0
        self.notices = 0
        self.keyframes_asked = 0
        self.removed: list[Consumer] = []

    def bypass_changed(self) -> None:
        self.notices += 1

    def request_keyframe(self) -> None:
        self.keyframes_asked += 1

    def downstream_changed(self) -> None:
        pass

    def remove_consumer(self, consumer: Consumer) -> None:
        self.removed.append(consumer)


def frame(data: bytes) -> EncodedFrame:
    return EncodedFrame(kind="video", data=data, timestamp=0, clock_rate=90_000, keyframe=vp8_is_keyframe(data),
                        received_at=0.0)


def test_every_change_to_what_the_rule_reads_notifies_the_producer() -> None:
    listener = Listener()
    consumer = Consumer("c", listener, "peer")
    connected = [True]
    consumer.connect(lambda _f: connected[0], "sender")  # a new sink and output
    assert listener.notices == 1 and not consumer_clear(consumer)
    consumer.deliver(frame(KEY))  # in step and sent: the way clears (told too: any change is)
    assert consumer_clear(consumer) and listener.notices == 3  # waiting for a keyframe ended, the sink took it
    consumer.deliver(frame(DELTA))  # nothing the rule reads changed: no notice
    assert listener.notices == 3
    connected[0] = False
    before = listener.notices
    consumer.deliver(frame(KEY))  # the sink cannot send: the keyframe is held
    assert consumer.holding and not consumer.sink_took_last and listener.notices == before + 2
    connected[0] = True
    consumer.deliver(frame(DELTA))  # the held keyframe and this delta go out
    assert consumer_clear(consumer)
    before = listener.notices
    consumer.report_bandwidth(100_000)  # the link cannot carry 2 Mbit/s: keyframes only
    assert consumer.thinned and listener.notices == before + 1
    before = listener.notices
    consumer.close()
    assert consumer.closed and listener.notices == before + 1 and listener.removed == [consumer]


def test_a_consumer_that_overflows_while_connecting_waits_for_a_keyframe_and_says_so() -> None:
    listener = Listener()
    consumer = Consumer("c", listener, "peer", max_queue=2)
    consumer.connect(lambda _f: False, "sender")
    for data in (KEY, DELTA):
        consumer.deliver(frame(data))
    assert consumer.holding
    before = listener.notices
    consumer.deliver(frame(DELTA))  # more than max_queue held: all dropped, from the next keyframe
    assert not consumer.holding and consumer.waiting_for_keyframe and listener.notices == before + 2


class FastPath:
    def __init__(self) -> None:
        self.outputs: tuple[object, ...] | None = None
        self.fast_frames = 0
        self.fast_bytes = 0
        self.incoming_bitrate: int | None = None

    @property
    def routed(self) -> bool:
        return self.outputs is not None

    def route(self, outputs: tuple[object, ...] | None) -> None:
        self.outputs = outputs


async def _no_pli() -> None:
    return None


async def test_a_producer_whose_bypass_is_withdrawn_sends_every_frame_through_python() -> None:
    """The room's gate (S1, S2): once the visit ended, its frames must meet the closed gate."""
    router = Router("v1", privileged=False)
    producer = router.add_producer("visitor", "video", _no_pli)
    fast = FastPath()
    producer.attach_fast_path(fast)
    consumer = router.consume(producer, "resident-video", "peer")
    consumer.connect(lambda _f: True, "resident-sender")
    producer.publish(frame(KEY))
    assert fast.routed
    producer.bypass_allowed = False
    assert not fast.routed
    producer.publish(frame(DELTA))
    assert not fast.routed and consumer.frames_delivered == 2
    producer.bypass_allowed = True
    producer.publish(frame(DELTA))
    assert fast.routed
    await router.close()


def test_the_consumer_does_not_depend_on_the_producer_module() -> None:
    """The listener protocol replaces the Consumer <-> Producer import cycle."""
    source = Path(__file__).parents[2] / "sfu" / "router" / "consumer.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert "sfu.router.producer" not in imported and "sfu.router.consumer" in {
        node.module for node in ast.walk(ast.parse((source.parent / "producer.py").read_text()))
        if isinstance(node, ast.ImportFrom)}
