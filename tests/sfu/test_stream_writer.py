"""The Python RTP stream writer (sfu/aiortc_adapter/stream_writer.py): VP8 packetisation as
aiortc's, and the same interface and datagrams as its C twin `sfu._rtp_native.Sender`."""

from __future__ import annotations

import os
import random
from typing import Any

import pylibsrtp
import pytest

from sfu.aiortc_adapter import PythonStreamWriter, SrtpCalls


def test_vp8_packetising_matches_aiortc_and_strips_back_to_the_frame() -> None:
    """The direct sender's VP8 payloads are aiortc's own packetiser's, byte for byte, and the
    receive path's descriptor strip recovers the frame from them and from richer descriptors."""
    from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor, vp8_depayload

    from sfu.aiortc_adapter import vp8_payloads
    from sfu.frame_assembler import vp8_frame_slice

    for size in (1, 1296, 1297, 2592, 4000):
        frame = bytes(i % 251 for i in range(size))
        for picture_id in (0, 127, 128, 0x7FFF):
            payloads = vp8_payloads(frame, picture_id)
            assert payloads == Vp8Encoder._packetize(frame, picture_id)
            assert b"".join(vp8_frame_slice(p) for p in payloads) == frame
    for descriptor in (VpxPayloadDescriptor(partition_start=1, partition_id=0),
                       VpxPayloadDescriptor(partition_start=1, partition_id=0, picture_id=5),
                       VpxPayloadDescriptor(partition_start=0, partition_id=0, picture_id=300, tl0picidx=4,
                                            tid=(1, 0), keyidx=3),
                       VpxPayloadDescriptor(partition_start=1, partition_id=0, tl0picidx=9)):
        payload = bytes(descriptor) + b"frame bytes"
        assert vp8_frame_slice(payload) == vp8_depayload(payload) == b"frame bytes"
    with pytest.raises(ValueError):
        vp8_frame_slice(b"\x90\x80\x81")


def _writers(native: Any, video: bool) -> tuple[Any, Any]:
    """The C Sender and its Python twin on the same stream state and SRTP key, without a socket."""
    key = os.urandom(28)

    def session() -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                                                         srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM))

    writers = []
    for make in (native.Sender, PythonStreamWriter):
        writer = make(video, 65530, 0xFFFFF000, 0x7FFE)
        writer.configure(96 if video else 111, 0xCAFE, b"", b"\xbe\xde\x00\x01\x10v\x00\x00", False)  # mid "v"
        srtp = SrtpCalls(session())
        writer.set_path(srtp.address, srtp.session, -1, b"", None, None, None, None)
        writers.append(writer)
    return writers[0], writers[1]


@pytest.mark.parametrize("video", [True, False])
def test_the_python_writer_sends_what_the_c_sender_sends(native: Any, video: bool) -> None:
    """Same interface, same state: each frame gives the same datagrams (sequence numbers wrapping,
    picture ids wrapping, a rejoined party's timestamps carried on), the same counters and the
    same history for NACKs. Neither has a socket here, so neither is ready to send past Python."""
    c, python = _writers(native, video)
    rng = random.Random(7)
    received_at = 100.0
    for n in range(40):
        size = rng.choice((1, 200, 1296, 1297, 3000)) if video else rng.randrange(1, 160)
        frame = bytes(rng.randrange(256) for _ in range(size))
        timestamp = n * (3000 if video else 960)
        if n == 25:
            for writer in (c, python):
                writer.source_changed()  # another producer, its count from 0 again
        if n >= 25:
            timestamp -= 25 * (3000 if video else 960)
        received_at += 0.033
        assert python.send(frame, timestamp, 90_000 if video else 48_000, received_at) == \
            c.send(frame, timestamp, 90_000 if video else 48_000, received_at)
        for name in ("packets_sent", "octets_sent", "frames_sent", "last_timestamp", "sequence", "picture_id",
                     "send_failures"):
            assert getattr(python, name) == getattr(c, name), name
    for sequence in range(65520, 65536 + 40):
        assert python.sent_packet(sequence & 0xFFFF) == c.sent_packet(sequence & 0xFFFF)
    assert not c.ready() and not python.ready()
    for writer in (c, python):
        writer.clear_path()
        with pytest.raises(RuntimeError):
            writer.send(b"x", 0, 90_000, 1.0)
