"""The frame tap's timestamp unwrapping (sfu/aiortc_adapter/receive.py)."""

from __future__ import annotations


def test_rtp_timestamps_unwrap_late_ones_are_refused_and_a_restart_carries_on() -> None:
    from sfu.aiortc_adapter import _TimestampUnwrapper

    unwrap = _TimestampUnwrapper(48_000)
    assert [unwrap.map(t) for t in (0xFFFFFC40, 0xFFFFFFF0, 0x00000330, 0x00000720)] == [0, 944, 1776, 2784]
    assert unwrap.map(0x00000330) is None  # older than the newest: a late packet
    assert unwrap.map(0x00000B10) == 3792
    assert unwrap.map(0xF0000000) == 3793  # far behind: the sender started over, the count goes on
    assert unwrap.map(0xF00003C0) == 4753
