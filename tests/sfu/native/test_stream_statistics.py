"""stream_statistics.c: sfu._rtp_native.StreamStatistics against aiortc's StreamStatistics."""

from __future__ import annotations

import random

import pytest


def test_the_c_stream_statistics_report_what_aiortcs_do(native: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random streams (loss, reordering, duplicates, the sequence and timestamp wraps, jumps,
    arrival jitter): every number aiortc's receiver reports read off the C twin equals aiortc's
    own StreamStatistics, fraction_lost (which resets its interval on each read) included."""
    import time

    from aiortc.rtcrtpreceiver import StreamStatistics
    from aiortc.rtp import RtpPacket

    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # aiortc reads time.time() per packet
    for seed in range(20):
        rnd = random.Random(seed)
        rate = rnd.choice([90_000, 48_000])
        reference, twin = StreamStatistics(rate), native.StreamStatistics(rate)  # type: ignore[attr-defined]
        seq, timestamp, held = rnd.randrange(0x10000), rnd.randrange(1 << 32), []
        for _ in range(2000):
            clock[0] += rnd.uniform(0.0, 0.04)
            roll = rnd.random()
            numbers = []
            if roll < 0.05:
                held.append((seq, timestamp))  # arrives later, out of order
            elif roll < 0.07:
                pass  # lost
            else:
                numbers.append((seq, timestamp))
                if roll > 0.97:
                    numbers.append((seq, timestamp))  # duplicated
                if held and roll > 0.9:
                    numbers.append(held.pop(0))
            if roll < 0.005:
                seq = (seq + rnd.choice([500, 0x7FFF, 0x9000])) & 0xFFFF
            for number, stamp in numbers:
                packet = RtpPacket(sequence_number=number, timestamp=stamp)
                reference.add(packet)
                twin.add(packet, clock[0])
            seq = (seq + 1) & 0xFFFF
            timestamp = (timestamp + rnd.choice([0, 960, 3000])) & 0xFFFFFFFF
            if reference.max_seq is None:
                continue
            assert (twin.packets_received, twin.max_seq, twin.base_seq, twin.cycles, twin.jitter,
                    twin.packets_expected, twin.packets_lost) == (
                reference.packets_received, reference.max_seq, reference.base_seq, reference.cycles,
                reference.jitter, reference.packets_expected, reference.packets_lost)
            if rnd.random() < 0.05:
                assert twin.fraction_lost == reference.fraction_lost
        assert reference.packets_lost > 0 and reference.jitter > 0 and reference.cycles > 0
