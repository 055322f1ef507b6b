"""nack_generator.c: sfu._rtp_native.NackGenerator against aiortc's NackGenerator."""

from __future__ import annotations

import random


def test_the_c_nack_generator_tracks_what_aiortcs_does(native: object) -> None:
    """Random sequence numbers (in order, lost, late, duplicated, jumps small and near half the
    space, the wrap): add() answers and the missing set equal aiortc's NackGenerator's each time."""
    from aiortc.rtcrtpreceiver import NackGenerator
    from aiortc.rtp import RtpPacket

    for seed in range(20):
        rnd = random.Random(seed)
        reference, twin = NackGenerator(), native.NackGenerator()  # type: ignore[attr-defined]
        seq, late = rnd.randrange(0x10000), []
        revealed = 0
        for _ in range(3000):
            roll = rnd.random()
            if roll < 0.05:
                late.append(seq)  # lost for now
            elif roll < 0.06:
                seq = (seq + rnd.choice([200, 1000, 0x7FFF, 0x8000, 0x9000])) & 0xFFFF  # a jump
            else:
                numbers = [seq] + ([seq] if roll < 0.08 else []) + ([late.pop(0)] if late and roll > 0.9 else [])
                for number in numbers:
                    answer = reference.add(RtpPacket(sequence_number=number))
                    assert twin.add(RtpPacket(sequence_number=number)) == answer
                    assert twin.missing == reference.missing and twin.max_seq == reference.max_seq
                    revealed += answer
            seq = (seq + 1) & 0xFFFF
        assert revealed > 20  # losses were seen
    for distance in (127, 128, 129):  # the edge of aiortc's 128-packet history, the wrap on the way
        reference, twin = NackGenerator(), native.NackGenerator()  # type: ignore[attr-defined]
        numbers = [65530, *((65532 + k) & 0xFFFF for k in range(distance)), 65531]  # 65531 comes back late
        for number in numbers:
            assert twin.add(RtpPacket(sequence_number=number)) == reference.add(RtpPacket(sequence_number=number))
            assert twin.missing == reference.missing
