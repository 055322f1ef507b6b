"""RTP handled in the socket's own callback: decrypt, parse, route to the receiver's tap.

aioice would try each datagram as a STUN message, queue it (an asyncio.Queue), wake the DTLS
transport's task and await through three coroutines per packet. Here SRTP packets are handled
synchronously in the datagram callback of each of the connection's sockets; STUN, DTLS and
RTCP still take aiortc's own path.

In C (`native.implementation`), the socket's callback is a `Demux` ingress: RTP of an
(SSRC, payload type) routed to a C Tap never enters Python. The first packet of each takes the
Python path, where aiortc's own router picks the receiver, and adds the route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiortc.clock
import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport

from sfu.aiortc_adapter import contract, native
from sfu.aiortc_adapter.rtp_parsing import ReceivedRtp, parse_rtp
from sfu.aiortc_adapter.srtp import SrtpCalls

TAP_ATTRIBUTE = "_openvisit_frame_tap"  # on a receiver: its tap (Python FrameTap or C Tap)
_TAKEN_ATTRIBUTE = "_openvisit_rtp_taken"  # on an aioice connection: its sockets' RTP is ours
_DEMUX_ATTRIBUTE = "_openvisit_demux"  # on an aioice connection: its sfu._rtp_native.Demux
DatagramReceived = Callable[[bytes, Any], None]


def take_rtp_from_sockets(dtls: RTCDtlsTransport) -> None:
    """Handle the SRTP packets of every socket of `dtls`'s ICE connection in its callback (once
    per connection)."""
    connection = contract.ice_connection(dtls.transport)
    if getattr(connection, _TAKEN_ATTRIBUTE, False):
        return
    setattr(connection, _TAKEN_ATTRIBUTE, True)
    ingress = native.implementation.pick(c=_c_ingress, python=_python_ingress)
    take = ingress(dtls, connection)
    for protocol in contract.ice_protocols(connection):  # aioice's StunProtocol per gathered socket
        protocol.datagram_received = take(protocol.datagram_received)


def untake_tap(dtls: RTCDtlsTransport, tap: Any) -> None:
    """No more routes to a C `tap` in its connection's ingress (its receiver stopped)."""
    demux = getattr(contract.ice_connection(dtls.transport), _DEMUX_ATTRIBUTE, None)
    if demux is not None:
        demux.unroute(tap)


def _is_rtp(data: bytes) -> bool:
    """RTP, not STUN, DTLS or RTCP (RFC 7983 first byte, RFC 5761 payload types)."""
    return len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 209


def _not_ours(receiver: Any, packet: ReceivedRtp) -> None:
    """A receiver without a tap: aiortc's own handling."""
    if receiver is not None:
        asyncio.get_running_loop().create_task(
            contract.handle_rtp_packet(receiver, packet.as_aiortc(), aiortc.clock.current_ms()))


def _python_ingress(dtls: RTCDtlsTransport, connection: Any) -> Callable[[DatagramReceived], DatagramReceived]:
    extension_ids = contract.header_extension_ids(dtls)  # filled in as transceivers start
    rtp_router, rx_srtp = contract.rtp_router(dtls), contract.rx_srtp
    clock = aiortc.clock
    srtp: SrtpCalls | None = None  # for the transport's receiving session, once the handshake made it

    def take(not_rtp: DatagramReceived) -> DatagramReceived:
        def datagram_received(data: bytes, addr: Any) -> None:
            nonlocal srtp
            rx = rx_srtp(dtls)
            if rx is None or not _is_rtp(data):
                not_rtp(data, addr)  # STUN, DTLS, RTCP, or RTP before the handshake completed
                return
            if srtp is None or srtp.session is not rx:
                srtp = SrtpCalls(rx)
            try:
                packet = parse_rtp(srtp.unprotect(data), extension_ids.abs_send_time)
            except (pylibsrtp.Error, ValueError):
                return
            receiver = rtp_router.route_rtp(packet)  # reads ssrc and payload_type
            tap: Any = getattr(receiver, TAP_ATTRIBUTE, None)
            if tap is not None:
                tap.handle(packet, clock.current_ms())
            else:
                _not_ours(receiver, packet)

        return datagram_received

    return take


def _c_ingress(dtls: RTCDtlsTransport, connection: Any) -> Callable[[DatagramReceived], DatagramReceived]:
    c = native.implementation.module
    extension_ids = contract.header_extension_ids(dtls)
    rtp_router, rx_srtp = contract.rtp_router(dtls), contract.rx_srtp
    clock = aiortc.clock
    demux = c.Demux()
    setattr(connection, _DEMUX_ATTRIBUTE, demux)
    srtp: SrtpCalls | None = None

    def take(not_rtp: DatagramReceived) -> DatagramReceived:
        def datagram_received(data: bytes, addr: Any) -> None:  # what the C ingress does not route
            nonlocal srtp
            rx = rx_srtp(dtls)
            if rx is None or not _is_rtp(data):
                not_rtp(data, addr)
                return
            if srtp is None or srtp.session is not rx:
                srtp = SrtpCalls(rx)
            abs_send_time_id = extension_ids.abs_send_time
            abs_id = -1 if abs_send_time_id is None else abs_send_time_id
            demux.set_srtp(srtp.address, srtp, abs_id)
            fields = c.unprotect_rtp(srtp.address, data, abs_id)
            if fields is None:
                return
            packet = ReceivedRtp(*fields)
            receiver = rtp_router.route_rtp(packet)
            tap: Any = getattr(receiver, TAP_ATTRIBUTE, None)
            if tap is not None:  # from the next packet on, the ingress routes to it
                tap.handle(*fields, clock.current_ms())
                demux.route(packet.ssrc, packet.payload_type, tap)
            else:
                _not_ours(receiver, packet)

        return demux.ingress(datagram_received).datagram_received

    return take
