"""FrameAssembler: whole frames the moment they are complete, in order, through reordering, loss,
retransmission and the sequence-number wrap."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from sfu.aiortc_adapter import native_rtp
from sfu.frame_assembler import FrameAssembler, vp8_frame_slice


def _native_assembler() -> Any:
    module = native_rtp()
    if module is None:
        if os.environ.get("CI") == "true":
            pytest.fail("sfu._rtp_native is not built (pip install -e . builds it)")
        pytest.skip("sfu._rtp_native is not built")
    return module.FrameAssembler


@pytest.fixture(params=["python", "c"])
def make(request: pytest.FixtureRequest) -> Any:
    """The Python reference and its C twin (sfu._rtp_native.FrameAssembler): every test runs on both."""
    return FrameAssembler if request.param == "python" else _native_assembler()


def test_a_frame_is_released_at_its_marker_packet(make: Any) -> None:
    frames = make()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(2, 3000, True, b"b") == [(3000, b"ab")]  # now, not when the next frame begins
    assert frames.add(3, 6000, True, b"c") == [(6000, b"c")]  # single-packet frames, one after another


def test_reordered_packets_wait_for_each_other(make: Any) -> None:
    frames = make()
    assert frames.add(7, 0, True, b"0") == [(0, b"0")]
    assert frames.add(10, 3000, True, b"c") is None  # the last packet first
    assert frames.add(9, 3000, False, b"b") is None
    assert frames.add(8, 3000, False, b"a") == [(3000, b"abc")]
    assert frames.add(11, 6000, False, b"d") is None


def test_a_filled_hole_releases_every_frame_completed_behind_it(make: Any) -> None:
    frames = make()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(3, 6000, True, b"c") is None  # packet 2 (the end of frame 3000) is lost...
    assert frames.add(4, 9000, True, b"d") is None
    assert frames.add(2, 3000, True, b"b") == [(3000, b"ab"), (6000, b"c"), (9000, b"d")]  # ...retransmitted
    assert frames.add(5, 12000, True, b"e") == [(12000, b"e")]  # and the stream is not a frame late since
    assert frames.frames_lost == 0


def test_a_hole_that_is_never_filled_is_given_up_and_assembly_restarts_at_the_next_frame(make: Any) -> None:
    frames = make(max_frames_waiting=3)
    assert frames.add(1, 3000, False, b"a") is None  # packet 2 never comes
    for seq in range(3, 7):  # four complete frames pile up behind the hole
        assert frames.add(seq, 3000 * seq, True, b"x") is None
    assert frames.frames_lost >= 1
    assert frames.add(7, 21000, False, b"n") is None  # a fresh start...
    assert frames.add(8, 21000, True, b"o") == [(21000, b"no")]
    assert frames.add(2, 3000, True, b"b") is None  # ...and the retransmission that came too late is ignored


def test_duplicates_are_ignored_and_the_sequence_number_wraps(make: Any) -> None:
    frames = make()
    assert frames.add(65534, 3000, False, b"a") is None
    assert frames.add(65534, 3000, False, b"a") is None
    assert frames.add(65535, 3000, False, b"b") is None
    assert frames.add(0, 3000, True, b"c") == [(3000, b"abc")]
    assert frames.add(0, 3000, True, b"c") is None  # already released
    assert frames.add(1, 6000, True, b"d") == [(6000, b"d")]


def test_a_sender_without_markers_still_gets_its_frames_out_one_frame_later(make: Any) -> None:
    frames = make()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(2, 6000, False, b"b") == [(3000, b"a")]


def test_a_large_keyframe_is_not_mistaken_for_a_stall(make: Any) -> None:
    frames = make()
    for seq in range(300):  # a 390 kB keyframe, in order
        assert frames.add(seq, 3000, False, bytes([seq % 256])) is None
    out = frames.add(300, 3000, True, b"!")
    assert out is not None and len(out[0][1]) == 301 and frames.frames_lost == 0


def test_a_stream_that_jumps_back_restarts(make: Any) -> None:
    frames = make()
    assert frames.add(5000, 3000, True, b"a") == [(3000, b"a")]
    assert frames.add(100, 90000, True, b"r") is None  # a restarted sender: this frame may be partial
    assert frames.add(101, 93000, True, b"s") == [(93000, b"s")]


def test_the_c_assembler_gives_what_the_python_one_gives_on_random_streams() -> None:
    """Random streams: frames of 1-6 packets, reordering, duplicates, losses (some retransmitted
    late, some never), long gaps, jumps back, the sequence-number wrap. Every call must give the
    same frames and the same loss count from both."""
    native = _native_assembler()
    for seed in range(40):
        rnd = random.Random(seed)
        waiting = rnd.choice([3, 15])
        reference, twin = FrameAssembler(max_frames_waiting=waiting), native(max_frames_waiting=waiting)
        packets, seq, ts = [], rnd.randrange(0x10000), rnd.randrange(1 << 32)
        for _ in range(400):
            size = rnd.choice([1, 1, 2, 3, 6]) if rnd.random() > 0.01 else rnd.randint(100, 300)
            for k in range(size):
                packets.append((seq, ts, k == size - 1 and rnd.random() > 0.05, os.urandom(rnd.randint(0, 30))))
                seq = (seq + 1) & 0xFFFF
            ts = (ts + 3000) & 0xFFFFFFFF
            if rnd.random() < 0.01:
                seq = (seq + rnd.choice([-2000, -50, 500])) & 0xFFFF  # a jump
        delivered: list[tuple[int, int, bool, bytes]] = []
        late: list[tuple[int, int, bool, bytes]] = []
        for packet in packets:
            roll = rnd.random()
            if roll < 0.03:
                late.append(packet)  # lost now, retransmitted a little later
                continue
            if roll < 0.04:
                continue  # lost for good
            delivered.append(packet)
            if roll < 0.06:
                delivered.append(packet)  # a duplicate
            if late and rnd.random() < 0.2:
                delivered.append(late.pop(0))
        for i in range(0, len(delivered) - 1, 7):  # a little reordering
            if rnd.random() < 0.3:
                delivered[i], delivered[i + 1] = delivered[i + 1], delivered[i]
        released = 0
        for seq_number, timestamp, marker, payload in delivered:
            frames = reference.add(seq_number, timestamp, marker, payload)
            assert twin.add(seq_number, timestamp, marker, payload) == frames
            assert twin.frames_lost == reference.frames_lost
            released += len(frames or ())
        assert released > 100 and reference.frames_lost > 0  # the stream exercised both paths


def test_add_vp8_strips_the_descriptor_as_vp8_frame_slice_does_on_both() -> None:
    """add_vp8 (descriptor still on) on random, partly malformed payloads: the same frames from
    the Python reference and the C twin; a malformed payload is ignored by both."""
    native = _native_assembler()
    rnd = random.Random(7)
    reference, twin = FrameAssembler(), native()
    ignored = 0
    for seq in range(3000):
        descriptor = bytes(rnd.randrange(256) for _ in range(rnd.choice([0, 1, 2, 3, 4, 5, 6])))
        payload = descriptor + os.urandom(rnd.choice([0, 1, 5]))
        marker, timestamp = rnd.random() < 0.5, 3000 * (seq // 2)
        expected = reference.add_vp8(seq, timestamp, marker, payload)
        assert twin.add_vp8(seq, timestamp, marker, payload) == expected
        assert twin.frames_lost == reference.frames_lost
        try:
            vp8_frame_slice(payload) if payload else b""
        except (ValueError, IndexError):
            ignored += 1
    assert ignored > 100  # malformed descriptors were part of the mix
