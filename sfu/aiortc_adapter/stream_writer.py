"""The RTP stream writer in Python: `sfu._rtp_native.Sender`'s reference twin, same interface.

A stream writer owns one outgoing RTP stream's state (sequence numbers, timestamp origin, VP8
picture id, a history for retransmissions, the counters of RTCP sender reports) and turns each
encoded frame into SRTP datagrams: packetise (VP8 descriptor, or the Opus packet as it is), RTP
header with the negotiated extensions (mid, abs-send-time), SRTP. The C twin also sends them on
its socket; this one has no socket of its own and hands them back, as the C one does without one.
"""

from __future__ import annotations

import struct
from typing import Any

import aiortc.clock
import pylibsrtp

from sfu.aiortc_adapter.srtp import SrtpCalls

_RTP_HEADER = struct.Struct("!BBHII")
_VP8_PAYLOAD_MAX = 1296  # payload bytes after the 4-byte descriptor, as aiortc's packetiser (1300 in all)
HISTORY = 512  # packets kept for retransmission (a NACK names a sequence number)


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 packetisation: a 4-byte descriptor (X=1, I=1 with a 15-bit picture id; S=1 and
    PID=0 on the first packet of the frame) before each slice of the frame."""
    picture = (0x8000 | picture_id).to_bytes(2, "big")
    first, rest = b"\x90\x80" + picture, b"\x80\x80" + picture
    if len(frame) <= _VP8_PAYLOAD_MAX:
        return [first + frame]
    return [(first if pos == 0 else rest) + frame[pos:pos + _VP8_PAYLOAD_MAX]
            for pos in range(0, len(frame), _VP8_PAYLOAD_MAX)]


class PythonStreamWriter:
    """`sfu._rtp_native.Sender` in Python (see the module docstring). `set_path` takes the same
    arguments; only the SRTP session is used: no socket, so `ready()` is always False and
    `send()` returns the datagrams for the caller to send."""

    def __init__(self, video: bool, sequence: int, timestamp_origin: int, picture_id: int) -> None:
        self.video = video
        self.sequence = sequence & 0xFFFF
        self.picture_id = picture_id & 0x7FFF
        self._timestamp_origin = timestamp_origin & 0xFFFFFFFF
        self._payload_type = 0
        self._stream_ssrc = 0
        self._ext_head = b""  # up to and including the abs-send-time element's id byte
        self._ext_tail = b""  # the rest of the extension block (mid, padding)
        self._has_abs_send_time = False
        self._srtp_calls: SrtpCalls | None = None
        self._rebase = False
        self._last_frame_at: float | None = None
        self.last_timestamp = 0  # RTP timestamp of the last frame sent
        self.last_ntp = 0  # NTP time the last frame was sent
        self.packets_sent = self.octets_sent = self.frames_sent = 0
        self.send_failures = 0  # never: datagrams go back to the caller
        self._history: list[bytes | None] = [None] * HISTORY
        self._history_seq = [-1] * HISTORY

    def configure(self, payload_type: int, ssrc: int, ext_head: bytes, ext_tail: bytes,
                  has_abs_send_time: bool) -> None:
        """The negotiated payload type, SSRC, extensions."""
        self._payload_type, self._stream_ssrc = payload_type & 0x7F, ssrc
        self._ext_head, self._ext_tail, self._has_abs_send_time = ext_head, ext_tail, has_abs_send_time

    def set_path(self, context: int, session: pylibsrtp.Session, fd: int, sockaddr: bytes, dtls: Any,
                 connected: Any, nominated: Any, pair: Any) -> None:
        """The SRTP session to protect with (the rest is the C twin's socket and its checks)."""
        if self._srtp_calls is None or self._srtp_calls.session is not session:
            self._srtp_calls = SrtpCalls(session)

    def clear_path(self) -> None:
        self._srtp_calls = None

    def ready(self) -> bool:
        """Whether it could send past Python: never, it has no socket."""
        return False

    def source_changed(self) -> None:
        """Another producer feeds this stream now: carry its RTP clock on."""
        self._rebase = True

    def sent_packet(self, sequence_number: int) -> bytes | None:
        """The datagram sent with a sequence number, or None (for a NACK)."""
        slot = (sequence_number & 0xFFFF) % HISTORY
        return self._history[slot] if self._history_seq[slot] == sequence_number & 0xFFFF else None

    def send(self, data: bytes, timestamp: int, clock_rate: int, received_at: float) -> list[bytes]:
        """One frame (`timestamp`: the producer's count from 0) as protected datagrams."""
        srtp = self._srtp_calls
        if srtp is None:
            raise RuntimeError("Sender has no path (set_path)")
        if self._rebase:
            self._rebase = False
            if self._last_frame_at is not None:
                elapsed = max(1, int((received_at - self._last_frame_at) * clock_rate))
                self._timestamp_origin = (self.last_timestamp + elapsed - timestamp) & 0xFFFFFFFF
        rtp_timestamp = (self._timestamp_origin + timestamp) & 0xFFFFFFFF
        ntp = aiortc.clock.current_ntp_time()
        if self._has_abs_send_time:
            extensions = self._ext_head + ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big") + self._ext_tail
        else:
            extensions = self._ext_tail
        first_byte = 0x90 if extensions else 0x80
        payload_type, ssrc, sequence = self._payload_type, self._stream_ssrc, self.sequence
        datagrams = []
        if not self.video:  # one packet, marker set (as aiortc does), no retransmission history
            datagrams.append(srtp.protect(_RTP_HEADER.pack(first_byte, payload_type | 0x80, sequence, rtp_timestamp,
                                                           ssrc) + extensions + data))
            octets, sequence = len(data), (sequence + 1) & 0xFFFF
        else:
            payloads = vp8_payloads(data, self.picture_id)
            self.picture_id = (self.picture_id + 1) & 0x7FFF
            last = len(payloads) - 1
            octets = 0
            history, history_seq = self._history, self._history_seq
            for index, payload in enumerate(payloads):
                datagram = srtp.protect(_RTP_HEADER.pack(first_byte, payload_type | (0x80 if index == last else 0),
                                                         sequence, rtp_timestamp, ssrc) + extensions + payload)
                datagrams.append(datagram)
                slot = sequence % HISTORY
                history[slot], history_seq[slot] = datagram, sequence
                sequence = (sequence + 1) & 0xFFFF
                octets += len(payload)
        self.sequence = sequence
        self.last_timestamp, self._last_frame_at, self.last_ntp = rtp_timestamp, received_at, ntp
        self.packets_sent += len(datagrams)
        self.octets_sent += octets
        self.frames_sent += 1
        return datagrams
