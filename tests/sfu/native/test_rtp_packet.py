"""rtp_packet.c: sfu._rtp_native.unprotect_rtp (libsrtp, then the RTP header, extensions and
padding parsed in C) against the Python reference parser: the same packets in, the same fields
out; what SRTP refuses or what is malformed gives None."""

from __future__ import annotations

import os
import struct

import pytest

from sfu.aiortc_adapter import ReceivedRtp, parse_rtp
from tests.sfu.native.support import inbound_srtp, outbound_srtp


def _fields(packet: ReceivedRtp) -> tuple[object, ...]:
    return (packet.payload_type, packet.marker, packet.sequence_number, packet.timestamp, packet.ssrc, packet.payload,
            packet.padding_size, packet.abs_send_time)


def _rtp(seq: int, *, extension: bytes = b"", csrcs: int = 0, padding: int = 0, marker: int = 0) -> bytes:
    first = 0x80 | (0x10 if extension else 0) | (0x20 if padding else 0) | csrcs
    header = struct.pack("!BBHII", first, (marker << 7) | 96, seq, 90_000 + seq, 0x1234ABCD)
    header += b"".join(struct.pack("!I", 1000 + i) for i in range(csrcs))
    if extension:
        header += b"\xbe\xde" + struct.pack("!H", len(extension) // 4) + extension
    body = os.urandom(300)
    return header + body + (bytes(padding - 1) + bytes([padding]) if padding else b"")


def test_unprotect_rtp_gives_the_fields_the_python_parser_gives(native: object) -> None:
    abs_send_time = bytes([0x32]) + b"\x12\x34\x56"  # id 3, 3 bytes
    mid = bytes([0x10]) + b"0"  # id 1, 1 byte
    cases = [
        _rtp(1),
        _rtp(2, marker=1),
        _rtp(3, extension=mid + abs_send_time + b"\0\0"),  # abs-send-time after another element
        _rtp(4, extension=b"\0" + abs_send_time),  # after padding
        _rtp(5, extension=mid + b"\0\0"),  # no abs-send-time
        _rtp(6, csrcs=2, extension=abs_send_time),
        _rtp(7, padding=4),
        _rtp(8, extension=bytes([0xF0, 0, 0, 0]) + abs_send_time),  # id 15 stops the search
    ]
    theirs, ours = inbound_srtp(), inbound_srtp()
    protect_a, protect_b = outbound_srtp(), outbound_srtp()
    for plain in cases:
        expected = parse_rtp(theirs.unprotect(protect_a.protect(plain)), 3)
        got = native.unprotect_rtp(ours.address, protect_b.protect(plain), 3)  # type: ignore[attr-defined]
        assert got is not None
        assert got == _fields(expected)
        assert _fields(ReceivedRtp(*got)) == _fields(expected)
    again = protect_b.protect(_rtp(9))
    assert native.unprotect_rtp(ours.address, again, -1) is not None  # type: ignore[attr-defined]
    assert native.unprotect_rtp(ours.address, again, -1) is None  # type: ignore[attr-defined]  # a replay
    forged = protect_b.protect(_rtp(10))
    assert native.unprotect_rtp(ours.address, forged[:-1] + bytes([forged[-1] ^ 1]), -1) is None  # type: ignore[attr-defined]
    assert native.unprotect_rtp(ours.address, b"\x80" * 8, -1) is None  # type: ignore[attr-defined]  # too short
    for last in (0, 255):  # padding bit set, and a padding length of 0 / longer than the payload
        plain = bytes([0xA0]) + _rtp(11 + last)[1:40] + bytes([last])
        with pytest.raises(ValueError):
            parse_rtp(plain, -1)
        assert native.unprotect_rtp(ours.address, protect_b.protect(plain), -1) is None  # type: ignore[attr-defined]
