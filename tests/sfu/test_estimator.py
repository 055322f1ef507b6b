"""aiortc's REMB estimator made cheaper (sfu/aiortc_adapter/estimator.py): every estimate the same."""

from __future__ import annotations

from aiortc.rate import RemoteBitrateEstimator

from sfu.aiortc_adapter import speed_up_estimator
from tests.sfu.support_estimator import estimator_samples


def test_the_sped_up_remb_estimator_gives_every_estimate_the_stock_one_gives() -> None:
    """speed_up_estimator replaces two of the estimator's pieces (the rate window, the minimum
    frame period): same inputs, same REMBs, also when it takes over an estimator mid-stream."""
    for seed in (1, 2, 3):
        samples = estimator_samples(4000, seed)
        stock, fast, late = RemoteBitrateEstimator(), RemoteBitrateEstimator(), RemoteBitrateEstimator()
        speed_up_estimator(fast)
        expected, got, got_late = [], [], []
        for index, (arrival, send_time, size) in enumerate(samples):
            if index == 1500:
                speed_up_estimator(late)  # its window is full of the stock counter's buckets
            expected.append(stock.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
            got.append(fast.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
            got_late.append(late.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
        estimates = [e for e in expected if e is not None]
        assert len(estimates) > 100 and len({bitrate for bitrate, _ in estimates}) > 50  # it really estimated
        assert got == expected
        assert got_late == expected
