"""Process-wide patches of aiortc (sfu/aiortc_adapter/patches.py): the fast clock."""

from __future__ import annotations


def test_the_fast_clock_gives_aiortc_the_same_times() -> None:
    """abs-send-time and arrival times read from integer time, equal to aiortc's datetime version."""
    import aiortc.clock

    from sfu.aiortc_adapter import install_fast_clock

    reference_ms = int((aiortc.clock.current_datetime() - aiortc.clock.NTP_EPOCH).total_seconds() * 1000)
    reference_ntp = aiortc.clock.datetime_to_ntp(aiortc.clock.current_datetime())
    install_fast_clock()
    assert abs(aiortc.clock.current_ms() - reference_ms) < 50
    assert abs(aiortc.clock.current_ntp_time() - reference_ntp) < 0.05 * 2**32
    assert aiortc.clock.current_ntp_time() >> 32 > 3_900_000_000  # seconds since 1900, this century
