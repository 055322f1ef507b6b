"""sfu._rtp_native (C) against the Python reference in sfu/aiortc_adapter.py: the same packets in,
the same fields out; the same frame in, the same datagrams on the wire, byte for byte."""

from __future__ import annotations

import os
import random
import socket
import struct
import types
from typing import Any

import pylibsrtp
import pytest

from sfu.aiortc_adapter import SrtpCalls, _ReceivedRtp, parse_rtp, vp8_payloads

KEY = os.urandom(28)
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def _session(direction: int) -> SrtpCalls:
    return SrtpCalls(pylibsrtp.Session(policy=pylibsrtp.Policy(key=KEY, ssrc_type=direction, srtp_profile=PROFILE)))


def _outbound() -> SrtpCalls:
    return _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)


def _inbound() -> SrtpCalls:
    return _session(pylibsrtp.Policy.SSRC_ANY_INBOUND)






def _fields(packet: _ReceivedRtp) -> tuple[object, ...]:
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
    theirs, ours = _inbound(), _inbound()
    protect_a, protect_b = _outbound(), _outbound()
    for plain in cases:
        expected = parse_rtp(theirs.unprotect(protect_a.protect(plain)), 3)
        got = native.unprotect_rtp(ours.address, protect_b.protect(plain), 3)  # type: ignore[attr-defined]
        assert got is not None
        assert got == _fields(expected)
        assert _fields(_ReceivedRtp(*got)) == _fields(expected)
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
    reference, ours, inbound = _outbound(), _outbound(), _inbound()
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
    audio_reference, audio_srtp = _outbound(), _outbound()
    voice: Any = _c_sender(native, sender, address, audio_srtp, video=False, sequence=7, origin=0)
    voice.send(b"opus", 48_000, 48_000, 1.0)
    assert receiver.recv(2048) == audio_reference.protect(
        struct.pack("!BBHII", 0x80, 111 | 0x80, 7, 48_000, 0xCAFEBABE) + b"opus")
    assert voice.sent_packet(7) is None  # audio is not retransmitted
    assert (voice.packets_sent, voice.octets_sent) == (1, 4)


def test_the_c_sender_carries_its_rtp_clock_on_when_another_producer_feeds_it(
        native: object, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    out: Any = _c_sender(native, sender, native.sockaddr(*receiver.getsockname()), _outbound(),  # type: ignore[attr-defined]
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
    srtp = _outbound()
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
    assert len(datagrams) == 1 and parse_rtp(_inbound().unprotect(datagrams[0]), -1).payload[4:] == b"\x10" * 10
    out.clear_path()
    assert not out.ready()
    with pytest.raises(RuntimeError):
        out.send(b"x", 0, 90_000, 1.0)


def test_the_c_sender_refuses_what_cannot_be_a_packet_and_counts_refused_datagrams(
        native: object, udp_pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = udp_pair
    address = native.sockaddr(*receiver.getsockname())  # type: ignore[attr-defined]
    voice: Any = _c_sender(native, sender, address, _outbound(), video=False)
    with pytest.raises(ValueError):  # an audio frame larger than a datagram
        voice.send(bytes(3000), 0, 48_000, 1.0)
    with pytest.raises(ValueError):
        native.sockaddr("not-an-address", 1)  # type: ignore[attr-defined]
    ipv6_address = native.sockaddr("::1", 9)  # type: ignore[attr-defined]  # not an address this IPv4 socket can use
    refused: Any = _c_sender(native, sender, ipv6_address, _outbound(), video=False)
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
        reference, ours = _outbound(), _outbound()
        voice: Any = _c_sender(native, sender, native.sockaddr(host, port), ours, video=False, sequence=9,  # type: ignore[attr-defined]
                               origin=0)
        voice.send(b"opus", 960, 48_000, 1.0)
        assert receiver.recv(2048) == reference.protect(
            struct.pack("!BBHII", 0x80, 111 | 0x80, 9, 960, 0xCAFEBABE) + b"opus")
    finally:
        sender.close()
        receiver.close()


def test_the_c_nack_generator_tracks_what_aiortcs_does(native: object) -> None:
    """Random sequence numbers (in order, lost, late, duplicated, jumps small and near half the
    space, the wrap): add() answers and the missing set equal aiortc's NackGenerator's each time."""
    from aiortc.rtcrtpreceiver import NackGenerator
    from aiortc.rtp import RtpPacket

    for seed in range(20):
        rnd = random.Random(seed)
        reference, twin = NackGenerator(), native.NackGenerator()  # type: ignore[attr-defined]
        seq, late = rnd.randrange(0x10000), []
        revealed = 0
        for _ in range(3000):
            roll = rnd.random()
            if roll < 0.05:
                late.append(seq)  # lost for now
            elif roll < 0.06:
                seq = (seq + rnd.choice([200, 1000, 0x7FFF, 0x8000, 0x9000])) & 0xFFFF  # a jump
            else:
                numbers = [seq] + ([seq] if roll < 0.08 else []) + ([late.pop(0)] if late and roll > 0.9 else [])
                for number in numbers:
                    answer = reference.add(RtpPacket(sequence_number=number))
                    assert twin.add(RtpPacket(sequence_number=number)) == answer
                    assert twin.missing == reference.missing and twin.max_seq == reference.max_seq
                    revealed += answer
            seq = (seq + 1) & 0xFFFF
        assert revealed > 20  # losses were seen
    for distance in (127, 128, 129):  # the edge of aiortc's 128-packet history, the wrap on the way
        reference, twin = NackGenerator(), native.NackGenerator()  # type: ignore[attr-defined]
        numbers = [65530, *((65532 + k) & 0xFFFF for k in range(distance)), 65531]  # 65531 comes back late
        for number in numbers:
            assert twin.add(RtpPacket(sequence_number=number)) == reference.add(RtpPacket(sequence_number=number))
            assert twin.missing == reference.missing


def test_the_c_stream_statistics_report_what_aiortcs_do(native: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random streams (loss, reordering, duplicates, the sequence and timestamp wraps, jumps,
    arrival jitter): every number aiortc's receiver reports read off the C twin equals aiortc's
    own StreamStatistics, fraction_lost (which resets its interval on each read) included."""
    import time

    from aiortc.rtcrtpreceiver import StreamStatistics
    from aiortc.rtp import RtpPacket

    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])  # aiortc reads time.time() per packet
    for seed in range(20):
        rnd = random.Random(seed)
        rate = rnd.choice([90_000, 48_000])
        reference, twin = StreamStatistics(rate), native.StreamStatistics(rate)  # type: ignore[attr-defined]
        seq, timestamp, held = rnd.randrange(0x10000), rnd.randrange(1 << 32), []
        for _ in range(2000):
            clock[0] += rnd.uniform(0.0, 0.04)
            roll = rnd.random()
            numbers = []
            if roll < 0.05:
                held.append((seq, timestamp))  # arrives later, out of order
            elif roll < 0.07:
                pass  # lost
            else:
                numbers.append((seq, timestamp))
                if roll > 0.97:
                    numbers.append((seq, timestamp))  # duplicated
                if held and roll > 0.9:
                    numbers.append(held.pop(0))
            if roll < 0.005:
                seq = (seq + rnd.choice([500, 0x7FFF, 0x9000])) & 0xFFFF
            for number, stamp in numbers:
                packet = RtpPacket(sequence_number=number, timestamp=stamp)
                reference.add(packet)
                twin.add(packet, clock[0])
            seq = (seq + 1) & 0xFFFF
            timestamp = (timestamp + rnd.choice([0, 960, 3000])) & 0xFFFFFFFF
            if reference.max_seq is None:
                continue
            assert (twin.packets_received, twin.max_seq, twin.base_seq, twin.cycles, twin.jitter,
                    twin.packets_expected, twin.packets_lost) == (
                reference.packets_received, reference.max_seq, reference.base_seq, reference.cycles,
                reference.jitter, reference.packets_expected, reference.packets_lost)
            if rnd.random() < 0.05:
                assert twin.fraction_lost == reference.fraction_lost
        assert reference.packets_lost > 0 and reference.jitter > 0 and reference.cycles > 0
