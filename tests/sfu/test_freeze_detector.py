"""WebRTC's freeze definition (webrtc-stats freezeCount / totalFreezesDuration, libwebrtc's
video_quality_observer2.cc), as the SFU and the load generator both count it: a frame interval
>= max(3 x average, average + 150 ms), the average over the last 30 intervals, this one included."""

from __future__ import annotations

import pytest

from sfu.freeze_detector import FreezeDetector, freezes

STEADY = [i / 30 for i in range(60)]  # 30 fps for two seconds


def test_a_steady_stream_has_no_freeze() -> None:
    assert freezes(STEADY).count == 0


def test_an_interval_over_three_averages_but_under_average_plus_150_ms_is_no_freeze() -> None:
    assert freezes([*STEADY, STEADY[-1] + 0.170]).count == 0  # 170 ms > 3 x 33 ms, < 33 + 150 ms


def test_a_long_gap_is_one_freeze_of_its_length() -> None:
    detector = FreezeDetector()
    assert [detector.frame(t) for t in STEADY] == [None] * len(STEADY)
    assert detector.frame(STEADY[-1] + 0.4) == pytest.approx(0.4)
    # The first 400 ms interval raised the average a little: a second one right after is still a freeze.
    assert detector.frame(STEADY[-1] + 0.8) == pytest.approx(0.4)
    assert (detector.count, detector.total_seconds) == (2, pytest.approx(0.8))


def test_at_a_low_frame_rate_the_threshold_is_three_averages() -> None:
    five_fps = [i / 5 for i in range(20)]  # average 200 ms: the threshold is 600 ms, not 350 ms
    assert freezes([*five_fps, five_fps[-1] + 0.5]).count == 0
    assert freezes([*five_fps, five_fps[-1] + 0.7]).count == 1


def test_nothing_is_judged_before_five_intervals_are_known() -> None:
    assert freezes([0.0, 0.033, 0.066, 0.1, 1.0]).count == 0
    assert freezes([0.0, 0.033, 0.066, 0.1, 0.133, 1.0]).count == 1


def test_five_seconds_without_a_frame_is_a_pause_not_a_freeze() -> None:
    detector = FreezeDetector()
    for t in [*STEADY, STEADY[-1] + 6.0]:
        detector.frame(t)
    assert (detector.count, detector.pauses) == (0, 1)


def test_the_average_covers_the_recent_window_only() -> None:
    """After the rate drops from 30 to 5 fps the slow intervals fill the 30-frame average, so
    after the first few they stop counting as freezes."""
    slow = [STEADY[-1] + 0.2 * (i + 1) for i in range(60)]
    got = freezes([*STEADY, *slow])
    assert 1 <= got.count < 10


def test_frames_read_from_a_counter_are_spread_over_their_tick() -> None:
    """The SFU reads a frame counter every 100 ms (the C fast path forwards frames without Python):
    3 frames a tick is 30 fps and no freeze; ticks without frames then end in a freeze measured to
    about a tick."""
    detector = FreezeDetector()
    t = 0.0
    for _ in range(20):
        assert detector.frames(3, t, t + 0.1) == []
        t += 0.1
    for _ in range(4):
        assert detector.frames(0, t, t + 0.1) == []
        t += 0.1
    ended = detector.frames(3, t, t + 0.1)  # the last frame was at the end of the last full tick
    assert ended == [pytest.approx(0.4 + 0.1 / 3)]
