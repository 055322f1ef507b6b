"""The receive path's RTP parser (sfu/aiortc_adapter/rtp_parsing.py) against aiortc's serializer."""

from __future__ import annotations

import pytest


def test_parse_rtp_reads_what_aiortc_writes() -> None:
    """The receive path's own parser agrees with aiortc's serializer: header fields, CSRCs skipped,
    abs-send-time found among other extensions, padding removed; malformed packets raise."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    from sfu.aiortc_adapter import parse_rtp

    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
        RTCRtpHeaderExtensionParameters(id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")]))
    packet = RtpPacket(payload_type=96, marker=1, sequence_number=65535, timestamp=0xFFFFFFF0, ssrc=0x12345678,
                       payload=b"\x90\x80\x81\x02vp8 data")
    packet.csrc = [7, 8]
    packet.extensions.mid = "video0"
    packet.extensions.abs_send_time = 0xABCDEF
    parsed = parse_rtp(packet.serialize(extensions), abs_send_time_id=3)
    assert (parsed.payload_type, parsed.marker, parsed.sequence_number, parsed.timestamp, parsed.ssrc) == (
        96, 1, 65535, 0xFFFFFFF0, 0x12345678)
    assert parsed.abs_send_time == 0xABCDEF and parsed.payload == b"\x90\x80\x81\x02vp8 data"
    assert parse_rtp(packet.serialize(extensions), abs_send_time_id=None).abs_send_time is None
    padded = bytearray(RtpPacket(payload_type=111, sequence_number=1, payload=b"opus").serialize())
    padded[0] |= 0x20
    padded += b"\0\0\3"
    assert parse_rtp(bytes(padded), None).payload == b"opus"
    for bad in (b"\x80\x60", b"\x40" + bytes(11), bytes(padded[:-1]) + b"\x40",
                b"\x90\x60" + bytes(10) + b"\xbe\xde\x00\x09"):
        with pytest.raises(ValueError):
            parse_rtp(bad, 3)
