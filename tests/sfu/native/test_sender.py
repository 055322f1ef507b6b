"""sender.c: sfu._rtp_native.Sender against the Python path: the same frame in, the same datagrams
on the wire, byte for byte; its RTP clock, its path checks, refusals and IPv6 (sockaddr)."""

from __future__ import annotations

import os
import socket
import struct
import types
from typing import Any

import pytest

from sfu.aiortc_adapter import SrtpCalls, parse_rtp, vp8_payloads
from tests.sfu.native.support import inbound_srtp, outbound_srtp


def _c_sender(native: object, sender: socket.socket, address: bytes, srtp: SrtpCalls, *, video: bool,
              sequence: int = 65534, origin: int = 0xFFFFFF00, extensions: tuple[bytes, bytes] = (b"", b"")) -> object:
    out = native.Sender(video, sequence, origin, 0x1234)  # type: ignore[attr-defined]
    out.configure(96 if video else 111, 0xCAFEBABE, extensions[0], extensions[1], False)
    out.set_path(srtp.address, srtp.session, sender.fileno(), address, None, None, None, None)
    return out


def test_the_c_sender_puts_on_the_wire_what_the_python_path_would(
        native: object, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    address = native.sockaddr(*receiver.getsockname())  # type: ignore[attr-defined]
    reference, ours, inbound = outbound_srtp(), outbound_srtp(), inbound_srtp()
    extensions = b"\xbe\xde\x00\x01" + bytes([0x10]) + b"1\0\0"  # mid "1", padded
    out: Any = _c_sender(native, sender, address, ours, video=True, extensions=(b"", extensions))
    frame = os.urandom(3000)  # three packets: 1296 + 1296 + 408 bytes of frame
    out.send(frame, 0x200, 90_000, 1.0)  # the sequence number wraps inside the frame, the timestamp too
    timestamp = (0xFFFFFF00 + 0x200) & 0xFFFFFFFF
    payloads = vp8_payloads(frame, 0x1234)
    for index, payload in enumerate(payloads):
        seq = (65534 + index) & 0xFFFF
        marker = 0x80 if index == len(payloads) - 1 else 0
        expected = reference.protect(struct.pack("!BBHII", 0x90, 96 | marker, seq, timestamp, 0xCAFEBABE)
                                     + extensions + payload)
        datagram = receiver.recv(2048)
        assert datagram == expected
        assert out.sent_packet(seq) == datagram  # kept for a NACK
        assert parse_rtp(inbound.unprotect(datagram), 3).payload == payload
    assert out.sent_packet(60000) is None
    assert (out.packets_sent, out.octets_sent, out.frames_sent, out.sequence, out.picture_id) == (3, 3012, 1, 1, 0x1235)
    assert out.last_timestamp == timestamp and out.last_ntp > 0
    audio_reference, audio_srtp = outbound_srtp(), outbound_srtp()
    voice: Any = _c_sender(native, sender, address, audio_srtp, video=False, sequence=7, origin=0)
    voice.send(b"opus", 48_000, 48_000, 1.0)
    assert receiver.recv(2048) == audio_reference.protect(
        struct.pack("!BBHII", 0x80, 111 | 0x80, 7, 48_000, 0xCAFEBABE) + b"opus")
    assert voice.sent_packet(7) is None  # audio is not retransmitted
    assert (voice.packets_sent, voice.octets_sent) == (1, 4)


def test_the_c_sender_carries_its_rtp_clock_on_when_another_producer_feeds_it(
        native: object, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    out: Any = _c_sender(native, sender, native.sockaddr(*receiver.getsockname()), outbound_srtp(),  # type: ignore[attr-defined]
                         video=False, origin=1000)
    out.send(b"a", 96_000, 48_000, 10.0)
    assert out.last_timestamp == 97_000
    out.source_changed()  # a rejoined party: its timestamps start from 0 again, half a second later
    out.send(b"b", 0, 48_000, 10.5)
    assert out.last_timestamp == 97_000 + 24_000
    out.send(b"c", 960, 48_000, 10.52)
    assert out.last_timestamp == 97_000 + 24_000 + 960


def test_the_c_sender_is_ready_only_while_its_path_holds(native: object,
                                                        udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    srtp = outbound_srtp()
    out: Any = native.Sender(True, 1, 0, 0)  # type: ignore[attr-defined]
    assert not out.ready()  # no path yet
    connected, pair = object(), object()
    dtls = types.SimpleNamespace(_state=connected, _tx_srtp=srtp.session)
    nominated = {1: pair}
    out.set_path(srtp.address, srtp.session, sender.fileno(), native.sockaddr(*receiver.getsockname()),  # type: ignore[attr-defined]
                 dtls, connected, nominated, pair)
    assert out.ready()
    nominated[1] = object()  # ICE switched pairs
    assert not out.ready()
    nominated[1] = pair
    dtls._state = object()  # DTLS closed
    assert not out.ready()
    dtls._state = connected
    dtls._tx_srtp = object()  # a new SRTP session
    assert not out.ready()
    dtls._tx_srtp = srtp.session
    assert out.ready()
    out.set_path(srtp.address, srtp.session, -1, b"", None, None, None, None)  # no socket of its own
    assert not out.ready()
    datagrams = out.send(b"\x10" * 10, 0, 90_000, 1.0)  # handed back for Python to send
    assert len(datagrams) == 1 and parse_rtp(inbound_srtp().unprotect(datagrams[0]), -1).payload[4:] == b"\x10" * 10
    out.clear_path()
    assert not out.ready()
    with pytest.raises(RuntimeError):
        out.send(b"x", 0, 90_000, 1.0)


def test_the_c_sender_refuses_what_cannot_be_a_packet_and_counts_refused_datagrams(
        native: object, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    address = native.sockaddr(*receiver.getsockname())  # type: ignore[attr-defined]
    voice: Any = _c_sender(native, sender, address, outbound_srtp(), video=False)
    with pytest.raises(ValueError):  # an audio frame larger than a datagram
        voice.send(bytes(3000), 0, 48_000, 1.0)
    with pytest.raises(ValueError):
        native.sockaddr("not-an-address", 1)  # type: ignore[attr-defined]
    ipv6_address = native.sockaddr("::1", 9)  # type: ignore[attr-defined]  # not an address this IPv4 socket can use
    refused: Any = _c_sender(native, sender, ipv6_address, outbound_srtp(), video=False)
    refused.send(b"x", 0, 48_000, 1.0)
    assert refused.send_failures == 1 and refused.packets_sent == 1  # counted, no exception


def test_the_c_sender_over_ipv6(native: object) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        receiver.bind(("::1", 0))
    except OSError:
        receiver.close()
        pytest.skip("no IPv6 loopback here")
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        host, port = receiver.getsockname()[:2]
        reference, ours = outbound_srtp(), outbound_srtp()
        voice: Any = _c_sender(native, sender, native.sockaddr(host, port), ours, video=False, sequence=9,  # type: ignore[attr-defined]
                               origin=0)
        voice.send(b"opus", 960, 48_000, 1.0)
        assert receiver.recv(2048) == reference.protect(
            struct.pack("!BBHII", 0x80, 111 | 0x80, 9, 960, 0xCAFEBABE) + b"opus")
    finally:
        sender.close()
        receiver.close()
