"""tap.c: sfu._rtp_native.Tap against the Python reference (`PythonFrameTap` in the adapter):
the same packets in, the same frames, NACKs, PLIs, REMBs and receiver statistics out; and frames
routed straight to C Senders arrive on the wire as the Python path would send them."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import types
from typing import Any

import pytest

from sfu.aiortc_adapter import PythonFrameTap, ReceivedRtp, c_frame_tap, parse_rtp, vp8_payloads
from sfu.router.frames import EncodedFrame
from tests.sfu.native.support import (
    AUDIO_SSRC,
    OPUS,
    RTX,
    RTX_SSRC,
    VIDEO_SSRC,
    VP8,
    FakeReceiver,
    inbound_srtp,
    outbound_srtp,
)


def _video_stream(seed: int) -> list[tuple[int, int, int, int, int, bytes, int, int | None, int]]:
    """Packets as (payload_type, marker, seq, timestamp, ssrc, payload, padding, abs_send_time,
    arrival_ms): VP8 frames of 1-3 packets, some keyframes; loss, reordering, duplicates, late
    retransmissions over RTX, a late old frame, a jump back (a restart)."""
    rng = random.Random(seed)
    packets: list[Any] = []
    seq, timestamp, send_time, arrival, rtx_seq = rng.randrange(65536), rng.randrange(2**32), 0, 10_000, 0
    sent: dict[int, tuple[Any, ...]] = {}
    lost: list[tuple[Any, ...]] = []
    for frame in range(300):
        parts = rng.choice((1, 1, 2, 3))
        keyframe = frame % 60 == 0 or rng.random() < 0.03
        body = bytes([0x00 if keyframe else 0x01]) + os.urandom(rng.randrange(20, 200))
        chunks = [body[i::parts] for i in range(parts)]
        send_time = (send_time + rng.randrange(2000, 3000)) & 0xFFFFFF
        arrival += rng.randrange(20, 45)
        for index, chunk in enumerate(chunks):
            descriptor = bytes([0x90 if index == 0 else 0x80, 0x80, 0x80 | (frame >> 8 & 0x7F), frame & 0xFF])
            packet = (VP8, int(index == parts - 1), seq, timestamp, VIDEO_SSRC, descriptor + chunk,
                      rng.choice((0, 0, 0, 4)), send_time, arrival)
            sent[seq] = packet
            roll = rng.random()
            if roll < 0.05:
                lost.append(packet)  # lost, retransmitted below (mostly)
            elif roll < 0.08 and packets:
                packets.insert(len(packets) - 1, packet)  # reordered
            else:
                packets.append(packet)
                if roll > 0.98:
                    packets.append(packet)  # duplicated
            seq = (seq + 1) & 0xFFFF
        if lost and rng.random() < 0.5:  # retransmissions over RTX, a frame or two late (or never)
            for original in lost:
                if rng.random() < 0.8:
                    packets.append((RTX, original[1], rtx_seq, original[3], RTX_SSRC,
                                    struct.pack("!H", original[2]) + original[5], 0, send_time, arrival + 5))
                    rtx_seq += 1
            lost.clear()
        if rng.random() < 0.03:  # a duplicate retransmission of something already received
            original = sent[rng.choice(list(sent)[-6:])]
            packets.append((RTX, original[1], rtx_seq, original[3], RTX_SSRC,
                            struct.pack("!H", original[2]) + original[5], 0, send_time, arrival + 5))
            rtx_seq += 1
        timestamp = (timestamp + 3000) & 0xFFFFFFFF
        if frame == 150:
            timestamp = (timestamp - 900_000) & 0xFFFFFFFF  # the sender started over
        if frame == 200:
            stale = list(sent.values())[-40]
            packets.append(stale)  # far behind: given up, or a late timestamp
    return packets


def _audio_stream(seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    packets = []
    seq, timestamp = rng.randrange(65536), rng.randrange(2**32)
    for n in range(300):
        payload = b"" if rng.random() < 0.02 else os.urandom(rng.randrange(10, 120))
        if rng.random() > 0.04:
            packets.append((OPUS, 1, seq, timestamp, AUDIO_SSRC, payload, 0, None, 10_000 + 20 * n))
        seq = (seq + 1) & 0xFFFF
        timestamp = (timestamp + (960 if rng.random() > 0.01 else -48_000 * 2)) & 0xFFFFFFFF
    return packets


def _as_received(fields: tuple[Any, ...]) -> ReceivedRtp:
    return ReceivedRtp(*fields[:8])


def _frames(got: list[EncodedFrame]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.data, f.timestamp, f.clock_rate, f.keyframe) for f in got]


def _stats(receiver: FakeReceiver) -> dict[int, tuple[Any, ...]]:
    return {ssrc: (s.base_seq, s.max_seq, s.cycles, s.packets_received, s.packets_expected, s.packets_lost)
            for ssrc, s in receiver._RTCRtpReceiver__remote_streams.items()}


@pytest.mark.parametrize("kind", ["video", "audio"])
@pytest.mark.parametrize("seed", range(6))
async def test_the_c_tap_does_what_the_python_tap_does(native: Any, kind: str, seed: int) -> None:
    theirs, ours = FakeReceiver(kind), FakeReceiver(kind)
    got_theirs: list[EncodedFrame] = []
    got_ours: list[EncodedFrame] = []
    python_tap = PythonFrameTap(theirs, kind, got_theirs.append)  # type: ignore[arg-type]
    c_tap = c_frame_tap(ours, kind, got_ours.append)  # type: ignore[arg-type]
    stream = _video_stream(seed) if kind == "video" else _audio_stream(seed)
    for index, fields in enumerate(stream):
        if index == len(stream) // 2:  # paused (direction change): nothing counted meanwhile
            theirs._enabled = ours._enabled = False
        if index == len(stream) // 2 + 5:
            theirs._enabled = ours._enabled = True
        python_tap.handle(_as_received(fields), fields[8])
        c_tap.handle(*fields)
    for _ in range(3):
        await asyncio.sleep(0)  # the NACK, PLI and REMB tasks
    assert _frames(got_ours) == _frames(got_theirs)
    assert len(got_ours) > 150
    assert ours.sent == theirs.sent
    if kind == "video":
        assert any(s[0] == "nack" for s in ours.sent) and any(s[0] == "pli" for s in ours.sent)
        assert any(s[0] == "rtcp" for s in ours.sent)  # REMB from the same estimates
    assert _stats(ours) == _stats(theirs)
    assert set(ours._RTCRtpReceiver__active_ssrc) == set(theirs._RTCRtpReceiver__active_ssrc)
    assert c_tap.frames_lost == python_tap._frames.frames_lost if kind == "video" else True


async def test_routed_frames_go_straight_to_the_senders_until_one_cannot_send(
        native: Any, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sock, far_end = udp_pair
    receiver = FakeReceiver("video")
    to_python: list[EncodedFrame] = []
    tap = c_frame_tap(receiver, "video", to_python.append)  # type: ignore[arg-type]
    out = native.Sender(True, 100, 0, 7)
    out.configure(96, 0xABCD, b"", b"", False)
    srtp, inbound = outbound_srtp(), inbound_srtp()
    pair, connected = object(), object()
    nominated = {1: pair}
    dtls = types.SimpleNamespace(_state=connected, _tx_srtp=srtp.session)
    out.set_path(srtp.address, srtp.session, sock.fileno(), native.sockaddr(*far_end.getsockname()), dtls, connected,
                 nominated, pair)
    keyframe = b"\x00" + os.urandom(50)
    seq = 1

    def frame(body: bytes, timestamp: int) -> None:
        nonlocal seq
        tap.handle(VP8, 1, seq, timestamp, VIDEO_SSRC, b"\x90\x80\x80\x01" + body, 0, None, 10_000 + seq)
        seq += 1

    frame(keyframe, 3000)
    assert len(to_python) == 1 and not tap.routed
    tap.route((out,))
    assert tap.routed
    deltas = [b"\x01" + os.urandom(40) for _ in range(3)]
    for n, delta in enumerate(deltas):
        frame(delta, 6000 + 3000 * n)
    assert len(to_python) == 1 and tap.fast_frames == 3 and tap.fast_bytes == sum(map(len, deltas))
    for n, delta in enumerate(deltas):  # on the wire as vp8_payloads + RTP would make them
        packet = parse_rtp(inbound.unprotect(far_end.recv(2048)), -1)
        assert packet.payload == vp8_payloads(delta, 7 + n)[0]
        assert (packet.sequence_number, packet.timestamp, packet.ssrc, packet.marker) == (100 + n, 3000 * (n + 1),
                                                                                            0xABCD, 1)
    nominated[1] = object()  # ICE switched pairs: Python must decide (set the new path)
    frame(b"\x01" + b"x" * 10, 15_000)
    assert not tap.routed and len(to_python) == 2 and to_python[-1].data == b"\x01" + b"x" * 10
    assert out.frames_sent == 3
