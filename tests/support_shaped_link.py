"""A weak link for one test client, in process: its downlink behaves like
`tc qdisc add ... tbf rate 256kbit latency 200ms` (a token bucket that queues packets up to a
delay limit and drops the rest), on loopback, with no root and no network namespace.

Packets are delayed as a real bottleneck queue delays them, so aiortc's delay-based bandwidth
estimator on that client sees congestion and sends the SFU a low REMB, as a browser on a weak
link would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

from sfu.aiortc_adapter import contract


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
        for protocol in contract.ice_protocols(contract.ice_connection(ice)):
            self._shape(protocol)

    def _shape(self, protocol: Any) -> None:
        loop = asyncio.get_running_loop()

        def received(data: bytes, addr: Any, deliver: Callable[[bytes, Any], None]) -> None:
            now = loop.time()
            start = max(now, self._free_at)
            if start - now > self.max_delay:  # the queue is full: tail drop
                self.stats.dropped += 1
                return
            self._free_at = start + (len(data) + 28) * 8 / self.rate_bps  # + IP/UDP headers
            self.stats.delivered += 1
            self.stats.delivered_bytes += len(data)
            loop.call_at(self._free_at, deliver, data, addr)

        intercept_datagrams(protocol, received)


class _DatagramInterceptor:
    """Sits between a UDP transport and its protocol, like the network in front of a socket."""

    def __init__(self, protocol: Any, handler: Callable[[bytes, Any, Callable[[bytes, Any], None]], None]) -> None:
        self._protocol = protocol
        self._handler = handler

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # The protocol's own callback, looked up at delivery: it may be replaced meanwhile (the SFU
        # adapter takes RTP there once the connection is up).
        self._handler(data, addr, lambda d, a: self._protocol.datagram_received(d, a))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)


def intercept_datagrams(protocol: Any, handler: Callable[[bytes, Any, Callable[[bytes, Any], None]], None]) -> None:
    """Every datagram for an aioice socket passes `handler(data, addr, deliver)` first, before the
    socket's protocol sees it: `deliver(data, addr)` hands it on (now or later), or it is lost."""
    protocol.transport.set_protocol(_DatagramInterceptor(protocol, handler))
