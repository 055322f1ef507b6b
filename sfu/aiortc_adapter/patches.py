"""Process-wide patches of aiortc and aioice (each listed in the contract table).

- `install_fast_clock`: aiortc reads the wall clock through `datetime` objects for every packet
  (abs-send-time, arrival times); integer arithmetic on `time.time()` gives the same values.
- `restrict_host_candidates`: aioice gathers every non-loopback address; the SFU announces only
  the configured ones (tests use 127.0.0.1).
- `restrict_udp_ports`: aioice binds an ephemeral port per connection; a firewall-friendly SFU
  binds only in the configured range.
- `announce_host_address`: behind a 1:1 NAT the SFU binds its private address but must put the
  public one in its SDP candidates (mediasoup's announced IP); aioice keeps the real address.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import itertools
import logging
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.rtcicetransport
from aiortc import RTCIceCandidate

from sfu.aiortc_adapter.contract import AdapterContractError

_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def _current_ms() -> int:
    return int((time.time() + _NTP_UNIX_OFFSET) * 1000)


def _current_ntp_time() -> int:
    now = time.time() + _NTP_UNIX_OFFSET
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * 4294967296)


def install_fast_clock() -> None:
    """Per-packet clock reads without building datetimes (process-wide, idempotent)."""
    for name in ("current_ms", "current_ntp_time"):
        if not callable(getattr(aiortc.clock, name, None)):
            raise AdapterContractError(f"aiortc.clock.{name} is gone: aiortc changed, update "
                                       "sfu/aiortc_adapter/contract.py")
    aiortc.clock.current_ms = _current_ms
    aiortc.clock.current_ntp_time = _current_ntp_time


_original_get_host_addresses = aioice.ice.get_host_addresses


def restrict_host_candidates(addresses: Sequence[str]) -> Callable[[], None]:
    """Gather host candidates only on `addresses` (process-wide). Returns an undo function."""
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses

    def undo() -> None:
        aioice.ice.get_host_addresses = _original_get_host_addresses

    return undo


_original_get_local_candidates = aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates


def announce_host_address(address: str) -> Callable[[], None]:
    """Announce host candidates with `address` instead of the bound one (process-wide), for an
    SFU behind a 1:1 NAT; only what the SDP says changes, aioice's sockets and pairs do not.
    Returns an undo function."""
    ipaddress.ip_address(address)  # a name would be a broken candidate: refuse it here

    def getLocalCandidates(self: aiortc.rtcicetransport.RTCIceGatherer) -> list[RTCIceCandidate]:
        return [dataclasses.replace(c, ip=address) if c.type == "host" else c
                for c in _original_get_local_candidates(self)]

    aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates = getLocalCandidates  # type: ignore[method-assign]

    def undo() -> None:
        aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates = (  # type: ignore[method-assign]
            _original_get_local_candidates)

    return undo


class _PortRangeLoop:
    """The running loop as aioice's candidate gathering sees it: a UDP socket asked for on port 0
    is bound to the next free port of the range instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: range, cursor: itertools.count[int]) -> None:
        self._loop = loop
        self._ports = ports
        self._cursor = cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, protocol_factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(protocol_factory, local_addr=local_addr, **kwargs)
        for _ in self._ports:
            port = self._ports[next(self._cursor) % len(self._ports)]
            try:
                return await self._loop.create_datagram_endpoint(protocol_factory, local_addr=(local_addr[0], port),
                                                                 **kwargs)
            except OSError:
                continue
        logging.getLogger(__name__).warning("no free UDP port in %d-%d on %s", self._ports.start,
                                            self._ports.stop - 1, local_addr[0])
        raise OSError(f"no free UDP port in {self._ports.start}-{self._ports.stop - 1}")


def restrict_udp_ports(first: int, last: int) -> Callable[[], None]:
    """Bind the SFU's ICE sockets only to ports first..last (process-wide). Returns an undo function."""
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"bad UDP port range {first}-{last}")
    ports, cursor = range(first, last + 1), itertools.count()
    if aioice.ice.asyncio is not asyncio:
        raise AdapterContractError("aioice.ice.asyncio is already wrapped")
    proxy = types.ModuleType("asyncio")
    proxy.__getattr__ = lambda name: getattr(asyncio, name)  # type: ignore[method-assign]
    proxy.get_running_loop = lambda: _PortRangeLoop(asyncio.get_running_loop(), ports, cursor)  # type: ignore[attr-defined]
    aioice.ice.asyncio = proxy

    def undo() -> None:
        aioice.ice.asyncio = asyncio

    return undo
