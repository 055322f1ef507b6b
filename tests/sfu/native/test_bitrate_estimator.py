"""bitrate_estimator.c: sfu._rtp_native.BitrateEstimator (what the C Tap feeds) against aiortc's
RemoteBitrateEstimator on the same samples."""

from __future__ import annotations

from typing import Any

from aiortc.rate import RemoteBitrateEstimator

from tests.sfu.support_estimator import estimator_samples as _estimator_samples


def test_the_c_remb_estimator_gives_every_estimate_the_stock_one_gives(native: Any) -> None:
    """sfu._rtp_native.BitrateEstimator (what the C Tap feeds) against aiortc's own, with two
    SSRCs: the same REMBs (bitrate and SSRC list) after every sample."""
    for seed in (1, 2, 3, 4):
        stock, ours = RemoteBitrateEstimator(), native.BitrateEstimator()
        expected, got = [], []
        for index, (arrival, send_time, size) in enumerate(_estimator_samples(4000, seed)):
            ssrc = 7 if index % 7 else 0xFFFFFFF0
            expected.append(stock.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=ssrc))
            got.append(ours.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=ssrc))
        assert len([e for e in expected if e is not None]) > 100
        assert got == expected
