"""VideoThinning: the receiver's link decides, keyframes only while thinned, probes back off."""

from __future__ import annotations

from sfu.router.video_thinning import VideoThinning


def test_a_link_that_carries_the_video_is_left_alone() -> None:
    t = VideoThinning()
    t.on_estimate(0.0, estimate=600_000, video_bitrate=500_000)
    t.on_estimate(1.0, estimate=300_000, video_bitrate=None)  # no measurement yet
    t.on_estimate(2.0, estimate=400_000, video_bitrate=550_000)  # an estimator still climbing to the rate
    assert not t.active


def test_a_weak_link_thins_then_probes_and_backs_off_while_it_stays_weak() -> None:
    t = VideoThinning()
    t.on_estimate(0.0, estimate=200_000, video_bitrate=500_000)
    assert t.active and t.times_thinned == 1
    assert t.keyframe_wanted(0.0) and not t.keyframe_wanted(1.0) and t.keyframe_wanted(2.0)
    assert not t.probe_due(9.9)
    assert t.probe_due(10.0) and not t.active  # full video again, once
    assert not t.probe_due(10.1)
    t.on_estimate(10.5, estimate=200_000, video_bitrate=500_000)  # too fresh: still the thinned stream's
    assert not t.active
    t.on_estimate(12.0, estimate=200_000, video_bitrate=500_000)  # the probe failed
    assert t.active and t.probe_after == 20.0
    for probe_at, next_wait in ((32.0, 40.0), (74.0, 60.0), (136.0, 60.0)):
        assert t.probe_due(probe_at)
        t.on_estimate(probe_at + 2, estimate=200_000, video_bitrate=500_000)
        assert t.probe_after == next_wait  # capped at MAX_PROBE


def test_a_link_that_recovered_for_a_while_starts_the_backoff_over() -> None:
    t = VideoThinning()
    t.on_estimate(0.0, estimate=200_000, video_bitrate=500_000)
    assert t.probe_due(10.0)
    t.on_estimate(12.0, estimate=200_000, video_bitrate=500_000)
    assert t.probe_after == 20.0 and t.probe_due(32.0)
    t.on_estimate(60.0, estimate=200_000, video_bitrate=500_000)  # 43 s of good video, then weak again
    assert t.active and t.probe_after == VideoThinning.FIRST_PROBE
