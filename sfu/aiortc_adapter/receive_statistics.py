"""What a receiver's RTCP receiver statistics (RFC 3550 A.3, A.8) say about the media it got.

The frame tap keeps them per SSRC (aiortc's `StreamStatistics` or the C twin) for the receiver
reports aiortc sends; the SFU's metrics read them here, without side effects: never
`fraction_lost`, which starts a new report interval each time it is read."""

from __future__ import annotations

from dataclasses import dataclass

from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx

from sfu.aiortc_adapter import contract


@dataclass(frozen=True)
class ReceivedStream:
    """One media SSRC's cumulative counts since its first packet."""

    ssrc: int
    packets_received: int
    packets_expected: int
    jitter_seconds: float  # interarrival jitter (RFC 3550 A.8), now

    @property
    def packets_lost(self) -> int:
        return max(0, self.packets_expected - self.packets_received)


def receive_statistics(receiver: RTCRtpReceiver) -> list[ReceivedStream]:
    """The receiver's media streams (retransmission streams left out: their packets are
    recoveries, not the media's loss)."""
    tables = contract.receiver_tables(receiver)
    clock_rates = [codec.clockRate for codec in tables.codecs.values() if not is_rtx(codec)]
    if not clock_rates:
        return []
    clock_rate = clock_rates[0]
    streams = []
    for ssrc, stats in list(tables.remote_streams.items()):
        if ssrc in tables.rtx_ssrc or not stats.packets_received:
            continue
        streams.append(ReceivedStream(ssrc, stats.packets_received, stats.packets_expected,
                                      stats.jitter / clock_rate))
    return streams
