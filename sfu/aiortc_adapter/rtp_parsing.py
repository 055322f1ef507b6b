"""RTP parsing for the receive path: the fixed header and abs-send-time, nothing more."""

from __future__ import annotations

import struct

from aiortc.rtp import RtpPacket

_RTP_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


class ReceivedRtp:
    """What the receive path needs of one RTP packet. aiortc's `RtpPacket.parse` builds every
    header extension of every packet; this reads the fixed header and abs-send-time only."""

    __slots__ = ("abs_send_time", "marker", "padding_size", "payload", "payload_type", "sequence_number", "ssrc",
                 "timestamp")

    def __init__(self, payload_type: int, marker: int, sequence_number: int, timestamp: int, ssrc: int,
                 payload: bytes, padding_size: int = 0, abs_send_time: int | None = None) -> None:
        self.payload_type, self.marker, self.sequence_number = payload_type, marker, sequence_number
        self.timestamp, self.ssrc, self.payload = timestamp, ssrc, payload
        self.padding_size, self.abs_send_time = padding_size, abs_send_time
    def as_aiortc(self) -> RtpPacket:
        """The same packet as aiortc's own parser gives it (header extensions: abs-send-time only)."""
        packet = RtpPacket(payload_type=self.payload_type, marker=self.marker, sequence_number=self.sequence_number,
                           timestamp=self.timestamp, ssrc=self.ssrc, payload=self.payload)
        packet.padding_size = self.padding_size
        packet.extensions.abs_send_time = self.abs_send_time
        return packet


def parse_rtp(data: bytes, abs_send_time_id: int | None) -> ReceivedRtp:
    """RFC 3550 fixed header, CSRCs skipped, RFC 8285 one-byte extensions searched for
    abs-send-time, padding removed. Raises ValueError for a malformed packet."""
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its header")
    first, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("not RTP version 2")
    pos = 12 + 4 * (first & 0x0F)
    abs_send_time = None
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP header extension truncated")
        profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * words
        if len(data) < end:
            raise ValueError("RTP header extension truncated")
        if profile == 0xBEDE and abs_send_time_id is not None:
            i = pos
            while i < end:
                element = data[i]
                if element == 0:  # padding
                    i += 1
                    continue
                element_id, size = element >> 4, (element & 0x0F) + 1
                if element_id == 15:
                    break
                if element_id == abs_send_time_id and size == 3:
                    abs_send_time = int.from_bytes(data[i + 1:i + 4], "big")
                    break
                i += 1 + size
        pos = end
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > len(data) - pos:
            raise ValueError("RTP padding length invalid")
    return ReceivedRtp(second & 0x7F, second >> 7, sequence_number, timestamp, ssrc,
                        data[pos:len(data) - padding], padding, abs_send_time)
