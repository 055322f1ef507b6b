"""FrameAssembler: whole frames the moment they are complete, in order, through reordering, loss,
retransmission and the sequence-number wrap."""

from __future__ import annotations

from sfu.frame_assembler import FrameAssembler


def test_a_frame_is_released_at_its_marker_packet() -> None:
    frames = FrameAssembler()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(2, 3000, True, b"b") == [(3000, b"ab")]  # now, not when the next frame begins
    assert frames.add(3, 6000, True, b"c") == [(6000, b"c")]  # single-packet frames, one after another


def test_reordered_packets_wait_for_each_other() -> None:
    frames = FrameAssembler()
    assert frames.add(7, 0, True, b"0") == [(0, b"0")]
    assert frames.add(10, 3000, True, b"c") is None  # the last packet first
    assert frames.add(9, 3000, False, b"b") is None
    assert frames.add(8, 3000, False, b"a") == [(3000, b"abc")]
    assert frames.add(11, 6000, False, b"d") is None


def test_a_filled_hole_releases_every_frame_completed_behind_it() -> None:
    frames = FrameAssembler()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(3, 6000, True, b"c") is None  # packet 2 (the end of frame 3000) is lost...
    assert frames.add(4, 9000, True, b"d") is None
    assert frames.add(2, 3000, True, b"b") == [(3000, b"ab"), (6000, b"c"), (9000, b"d")]  # ...retransmitted
    assert frames.add(5, 12000, True, b"e") == [(12000, b"e")]  # and the stream is not a frame late since
    assert frames.frames_lost == 0


def test_a_hole_that_is_never_filled_is_given_up_and_assembly_restarts_at_the_next_frame() -> None:
    frames = FrameAssembler(max_frames_waiting=3)
    assert frames.add(1, 3000, False, b"a") is None  # packet 2 never comes
    for seq in range(3, 7):  # four complete frames pile up behind the hole
        assert frames.add(seq, 3000 * seq, True, b"x") is None
    assert frames.frames_lost >= 1
    assert frames.add(7, 21000, False, b"n") is None  # a fresh start...
    assert frames.add(8, 21000, True, b"o") == [(21000, b"no")]
    assert frames.add(2, 3000, True, b"b") is None  # ...and the retransmission that came too late is ignored


def test_duplicates_are_ignored_and_the_sequence_number_wraps() -> None:
    frames = FrameAssembler()
    assert frames.add(65534, 3000, False, b"a") is None
    assert frames.add(65534, 3000, False, b"a") is None
    assert frames.add(65535, 3000, False, b"b") is None
    assert frames.add(0, 3000, True, b"c") == [(3000, b"abc")]
    assert frames.add(0, 3000, True, b"c") is None  # already released
    assert frames.add(1, 6000, True, b"d") == [(6000, b"d")]


def test_a_sender_without_markers_still_gets_its_frames_out_one_frame_later() -> None:
    frames = FrameAssembler()
    assert frames.add(1, 3000, False, b"a") is None
    assert frames.add(2, 6000, False, b"b") == [(3000, b"a")]


def test_a_large_keyframe_is_not_mistaken_for_a_stall() -> None:
    frames = FrameAssembler()
    for seq in range(300):  # a 390 kB keyframe, in order
        assert frames.add(seq, 3000, False, bytes([seq % 256])) is None
    out = frames.add(300, 3000, True, b"!")
    assert out is not None and len(out[0][1]) == 301 and frames.frames_lost == 0


def test_a_stream_that_jumps_back_restarts() -> None:
    frames = FrameAssembler()
    assert frames.add(5000, 3000, True, b"a") == [(3000, b"a")]
    assert frames.add(100, 90000, True, b"r") is None  # a restarted sender: this frame may be partial
    assert frames.add(101, 93000, True, b"s") == [(93000, b"s")]
