"""A weak link for one test client, in process: its downlink behaves like
`tc qdisc add ... tbf rate 256kbit latency 200ms` (a token bucket that queues packets up to a
delay limit and drops the rest), on loopback, with no root and no network namespace.

Packets are delayed as a real bottleneck queue delays them, so aiortc's delay-based bandwidth
estimator on that client sees congestion and sends the SFU a low REMB, as a browser on a weak
link would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection


@dataclass
class LinkStats:
    delivered: int = 0
    dropped: int = 0
    delivered_bytes: int = 0


class ShapedDownlink:
    def __init__(self, rate_bps: int, max_delay: float = 0.2) -> None:
        self.rate_bps = rate_bps
        self.max_delay = max_delay
        self.stats = LinkStats()
        self._free_at = 0.0

    def apply(self, pc: RTCPeerConnection) -> None:
        """Shape every UDP socket the client gathered (call after setLocalDescription)."""
        ice = pc.getTransceivers()[0].receiver.transport.transport
        for protocol in ice._connection._protocols:
            self._shape(protocol)

    def _shape(self, protocol: Any) -> None:
        loop = asyncio.get_running_loop()
        deliver = protocol.datagram_received

        def received(data: bytes, addr: Any) -> None:
            now = loop.time()
            start = max(now, self._free_at)
            if start - now > self.max_delay:  # the queue is full: tail drop
                self.stats.dropped += 1
                return
            self._free_at = start + (len(data) + 28) * 8 / self.rate_bps  # + IP/UDP headers
            self.stats.delivered += 1
            self.stats.delivered_bytes += len(data)
            loop.call_at(self._free_at, deliver, data, addr)

        protocol.datagram_received = received
