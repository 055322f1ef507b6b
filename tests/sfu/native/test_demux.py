"""demux.c: sfu._rtp_native's Demux and Ingress: routed RTP is decrypted and handed to its Tap in
C; everything else (no SRTP session yet, not routed, another payload type, STUN, RTCP) goes to
the socket protocol's own datagram_received; what SRTP refuses is dropped."""

from __future__ import annotations

import os
import struct
from typing import Any

from sfu.aiortc_adapter import SrtpCalls, c_frame_tap
from sfu.router.frames import EncodedFrame
from tests.sfu.native.support import AUDIO_SSRC, OPUS, FakeReceiver, inbound_srtp, outbound_srtp


def _protect(srtp: SrtpCalls, fields: tuple[Any, ...]) -> bytes:
    payload_type, marker, seq, timestamp, ssrc, payload = fields[:6]
    return srtp.protect(struct.pack("!BBHII", 0x80, payload_type | (marker << 7), seq, timestamp, ssrc) + payload)


async def test_the_ingress_handles_routed_rtp_in_c_and_hands_the_rest_to_python(native: Any) -> None:
    receiver = FakeReceiver("audio")
    frames: list[EncodedFrame] = []
    tap = c_frame_tap(receiver, "audio", frames.append)  # type: ignore[arg-type]
    fallback: list[bytes] = []
    demux = native.Demux()
    receive = demux.ingress(lambda data, addr: fallback.append(data)).datagram_received
    outbound, inbound = outbound_srtp(), inbound_srtp()
    first = _protect(outbound, (OPUS, 1, 1, 960, AUDIO_SSRC, b"one"))
    receive(first, ("127.0.0.1", 1))
    assert fallback == [first]  # no SRTP session known yet
    demux.set_srtp(inbound.address, inbound, -1)
    receive(first, ("127.0.0.1", 1))
    assert fallback == [first, first]  # not routed yet
    assert demux.route(AUDIO_SSRC, OPUS, tap) is True
    receive(_protect(outbound, (OPUS, 1, 2, 1920, AUDIO_SSRC, b"two")), ("127.0.0.1", 1))
    assert [f.data for f in frames] == [b"two"] and len(fallback) == 2
    other_type = _protect(outbound, (100, 1, 3, 2880, AUDIO_SSRC, b"x"))
    stun = b"\x00\x01\x00\x00" + os.urandom(16)
    rtcp = b"\x80\xc8" + os.urandom(30)
    for datagram in (other_type, stun, rtcp):
        receive(datagram, ("127.0.0.1", 1))
    assert fallback[2:] == [other_type, stun, rtcp]
    forged = bytearray(_protect(outbound, (OPUS, 1, 4, 3840, AUDIO_SSRC, b"four")))
    forged[-1] ^= 1
    receive(bytes(forged), ("127.0.0.1", 1))  # refused by SRTP: dropped
    assert [f.data for f in frames] == [b"two"] and len(fallback) == 5
    demux.unroute(tap)
    assert demux.routes == 0
    again = _protect(outbound, (OPUS, 1, 5, 4800, AUDIO_SSRC, b"five"))
    receive(again, ("127.0.0.1", 1))
    assert fallback[-1] == again
