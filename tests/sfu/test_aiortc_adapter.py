"""Contract tests for sfu/aiortc_adapter.py against the real aiortc (pinned 1.16).

A publisher sends pre-encoded VP8 and Opus through real WebRTC on loopback to the SFU's receiving
peer connection; the router forwards the encoded frames to the SFU's sending peer connection and
on to a subscriber. The forwarded payloads must equal the published bytes, and no frame may ever
be decoded or encoded anywhere on the path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.codecs import opus, vpx
from aiortc.rate import RemoteBitrateEstimator

from loadtests.synthetic_media import ReplayTrack, encode_opus, encode_vp8
from sfu.aiortc_adapter import (
    ForwardingTrack,
    contract,
    forward_through,
    rtc_configuration,
    send_pli,
    speed_up_estimator,
    tap_receiver,
)
from sfu.router import EncodedFrame, Producer, Router
from tests.sfu.support_estimator import estimator_samples
from tests.support_shaped_link import intercept_datagrams

VP8 = encode_vp8(frames=90)
OPUS = encode_opus(packets=100)


@pytest.fixture
def codec_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts every decode and encode aiortc performs anywhere in the process."""
    calls = {"decode": 0, "encode": 0}

    def counting(name: str, original: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    for cls in (vpx.Vp8Decoder, opus.OpusDecoder):
        monkeypatch.setattr(cls, "decode", counting("decode", cls.decode))
    for enc in (vpx.Vp8Encoder, opus.OpusEncoder):
        monkeypatch.setattr(enc, "encode", counting("encode", enc.encode))
    return calls


async def _negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def _receiver_of(pc: RTCPeerConnection, track: Any) -> RTCRtpReceiver:
    return next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)


def _producers_from(sfu_in: RTCPeerConnection, router: Router, *, plis: list[int] | None = None,
                    clamp_remb: bool = False) -> dict[str, Producer]:
    """The SFU side of a publisher: a producer per published track, fed by the adapter's tap
    (keyframe requests counted in `plis`; with `clamp_remb` the REMB relay installed)."""
    from sfu.aiortc_adapter import clamp_publisher_remb

    producers: dict[str, Producer] = {}

    @sfu_in.on("track")
    def on_track(track: Any) -> None:
        receiver = _receiver_of(sfu_in, track)

        async def pli() -> None:
            if plis is not None:
                plis.append(1)
            await send_pli(receiver)

        producer = router.add_producer("visitor", track.kind, pli)
        if clamp_remb:
            producer.send_bitrate_limit = clamp_publisher_remb(receiver, producer.bitrate_limit)
        producers[track.kind] = producer
        tap_receiver(receiver, producer.publish, producer)

    return producers


@pytest.fixture
async def peers(loopback_only: None) -> AsyncIterator[list[RTCPeerConnection]]:
    pcs = [RTCPeerConnection(rtc_configuration()) for _ in range(4)]
    yield pcs
    for pc in pcs:
        await pc.close()


@pytest.fixture(params=["c", "python"])
def media_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The per-packet path in C (sfu._rtp_native, as deployed) and the Python fallback."""
    from sfu.aiortc_adapter import native

    if request.param == "python":
        monkeypatch.setattr(native, "implementation", native.PYTHON)
    elif native.C is None:
        pytest.skip("sfu._rtp_native is not built")  # test_rtp_native fails for it under CI
    return str(request.param)


async def test_encoded_frames_are_forwarded_byte_for_byte_without_decoding_or_encoding(
        media_path: str, peers: list[RTCPeerConnection], codec_calls: dict[str, int]) -> None:
    publisher, sfu_in, sfu_out, subscriber = peers
    video, audio = ReplayTrack("video", VP8), ReplayTrack("audio", OPUS)
    publisher.addTrack(video)
    publisher.addTrack(audio)

    router = Router("visit-1", privileged=False)
    producers = _producers_from(sfu_in, router)
    await _negotiate(publisher, sfu_in)
    assert set(producers) == {"audio", "video"}
    for kind in ("video", "audio"):
        track = ForwardingTrack(kind)
        track.attach(router.consume(producers[kind], f"resident-{kind}", "peer"))
        sender = sfu_out.addTrack(track)
        forward_through(sender, track)

    received: dict[str, list[EncodedFrame]] = {"video": [], "audio": []}

    @subscriber.on("track")
    def on_forwarded_track(track: Any) -> None:
        tap_receiver(_receiver_of(subscriber, track), received[track.kind].append)

    await _negotiate(sfu_out, subscriber)
    for _ in range(100):
        if len(received["video"]) >= 45 and len(received["audio"]) >= 40:
            break
        await asyncio.sleep(0.1)
    got_video = [f.data for f in received["video"]]
    got_audio = [f.data for f in received["audio"]]
    assert len(got_video) >= 45 and len(got_audio) >= 40, (len(got_video), len(got_audio))
    # The subscriber starts at a keyframe and then sees the publisher's frames, in order, byte for byte.
    assert received["video"][0].keyframe
    first = video.sent.index(got_video[0])
    assert got_video == video.sent[first:first + len(got_video)]
    assert set(got_audio) <= set(audio.sent)
    assert producers["video"].frames_published >= len(got_video)
    assert codec_calls == {"decode": 0, "encode": 0}
    if media_path == "c":  # in steady state the frames went tap -> sender in C, past the interpreter
        for kind in ("video", "audio"):
            fast_path = producers[kind].fast_path
            assert fast_path is not None and fast_path.fast_frames > 20, kind
            consumer = producers[kind].consumers[0]
            assert consumer.frames_delivered >= fast_path.fast_frames
    await router.close()


async def test_a_subscriber_pli_reaches_the_publisher_as_a_keyframe_request(
        peers: list[RTCPeerConnection]) -> None:
    publisher, sfu_in, sfu_out, subscriber = peers
    publisher.addTrack(ReplayTrack("video", VP8))
    router = Router("visit-2", privileged=False)
    plis_to_publisher: list[int] = []
    producer = _producers_from(sfu_in, router, plis=plis_to_publisher)
    await _negotiate(publisher, sfu_in)
    track = ForwardingTrack("video")
    consumer = router.consume(producer["video"], "resident", "peer")
    track.attach(consumer)
    sender = sfu_out.addTrack(track)
    forward_through(sender, track)
    await _negotiate(sfu_out, subscriber)
    for _ in range(50):  # video reaches the subscriber (from a keyframe): no keyframe is wanted any more
        if consumer.frames_delivered and not producer["video"].keyframes.pending:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.6)  # past the PLI throttle
    producer["video"].keyframes.keyframe_received()
    before = len(plis_to_publisher)
    sender._send_keyframe()  # what aiortc calls when the subscriber's PLI arrives
    await asyncio.sleep(0.1)
    assert len(plis_to_publisher) == before + 1
    await router.close()


async def test_a_subscriber_remb_is_relayed_to_the_publisher(peers: list[RTCPeerConnection]) -> None:
    """Bandwidth: the slowest receiver's estimate reaches the publisher over real RTCP, so its
    encoder adapts (aiortc's publisher applies REMB to its encoder's target bitrate)."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    publisher, sfu_in, sfu_out, subscriber = peers
    publisher_sender = publisher.addTrack(ReplayTrack("video", VP8))
    router = Router("visit-3", privileged=False)
    producers = _producers_from(sfu_in, router, clamp_remb=True)
    await _negotiate(publisher, sfu_in)
    track = ForwardingTrack("video")
    track.attach(router.consume(producers["video"], "resident", "peer"))
    sender = sfu_out.addTrack(track)
    forward_through(sender, track)
    await _negotiate(sfu_out, subscriber)
    await asyncio.sleep(1.0)  # media flowing, SSRCs known
    # The subscriber's link can carry 256 kbps (the seeds' minimum); its REMB arrives at the SFU's sender.
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0,
                                                    fci=pack_remb_fci(256_000, [contract.sender_ssrc(sender)])))
    assert producers["video"].bitrate_limit() == 256_000
    encoder = None
    for _ in range(30):
        encoder = getattr(publisher_sender, "_RTCRtpSender__encoder", None)
        if encoder is not None and encoder.target_bitrate <= 256_000:
            break
        await asyncio.sleep(0.1)
    assert encoder is not None and encoder.target_bitrate <= 256_000
    await router.close()


async def test_ice_sockets_bind_only_inside_the_configured_udp_port_range(loopback_only: None) -> None:
    """A firewall opens one UDP range for the SFU: every candidate it gathers is inside it, a port
    already taken is skipped, and media still flows."""
    import socket

    from sfu.aiortc_adapter import restrict_udp_ports

    first, last = 47300, 47309
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", first))
    undo = restrict_udp_ports(first, last)
    sfu, client = RTCPeerConnection(rtc_configuration()), RTCPeerConnection(rtc_configuration())
    try:
        client.addTrack(ReplayTrack("video", VP8))
        sfu.addTransceiver("video", direction="recvonly")
        received: list[EncodedFrame] = []

        @sfu.on("track")
        def on_track(track: Any) -> None:
            tap_receiver(_receiver_of(sfu, track), received.append)

        await _negotiate(client, sfu)
        ports = [int(line.split()[5]) for line in sfu.localDescription.sdp.splitlines()
                 if line.startswith("a=candidate:")]
        assert ports and all(first < port <= last for port in ports)
        for _ in range(50):
            if received:
                break
            await asyncio.sleep(0.1)
        assert received
    finally:
        undo()
        taken.close()
        await sfu.close()
        await client.close()
    with pytest.raises(ValueError):
        restrict_udp_ports(10, 5)


def test_the_fast_clock_gives_aiortc_the_same_times() -> None:
    """abs-send-time and arrival times read from integer time, equal to aiortc's datetime version."""
    import aiortc.clock

    from sfu.aiortc_adapter import install_fast_clock

    reference_ms = int((aiortc.clock.current_datetime() - aiortc.clock.NTP_EPOCH).total_seconds() * 1000)
    reference_ntp = aiortc.clock.datetime_to_ntp(aiortc.clock.current_datetime())
    install_fast_clock()
    assert abs(aiortc.clock.current_ms() - reference_ms) < 50
    assert abs(aiortc.clock.current_ntp_time() - reference_ntp) < 0.05 * 2**32
    assert aiortc.clock.current_ntp_time() >> 32 > 3_900_000_000  # seconds since 1900, this century


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


async def test_a_lost_packet_is_retransmitted_from_the_senders_history(
        peers: list[RTCPeerConnection]) -> None:
    """The subscriber's link loses video packets; its NACKs reach the SFU's sender, which sends them
    again as they were: every frame arrives whole and in order. The subscriber also gets sender
    reports whose counts are the packets really sent."""
    publisher, sfu_in, sfu_out, subscriber = peers
    video = ReplayTrack("video", VP8)
    publisher.addTrack(video)
    router = Router("visit-nack", privileged=False)
    producers = _producers_from(sfu_in, router)
    await _negotiate(publisher, sfu_in)
    track = ForwardingTrack("video")
    track.attach(router.consume(producers["video"], "resident", "peer"))
    direct = forward_through(sfu_out.addTrack(track), track)
    received: list[EncodedFrame] = []

    @subscriber.on("track")
    def on_forwarded(track: Any) -> None:
        tap_receiver(_receiver_of(subscriber, track), received.append)

    await sfu_out.setLocalDescription(await sfu_out.createOffer())
    await subscriber.setRemoteDescription(sfu_out.localDescription)
    await subscriber.setLocalDescription(await subscriber.createAnswer())
    lost: list[int] = []
    ice = subscriber.getTransceivers()[0].receiver.transport.transport
    protocols = contract.ice_protocols(contract.ice_connection(ice))
    def lossy(data: bytes, addr: Any, deliver: Any) -> None:
        if len(data) > 1000 and len(lost) < 3 and direct.packets_sent > 40 + 10 * len(lost):
            lost.append(1)  # a video packet, now and then: the link lost it
            return
        deliver(data, addr)

    for protocol in protocols:
        intercept_datagrams(protocol, lossy)
    await sfu_out.setRemoteDescription(subscriber.localDescription)
    for _ in range(100):
        if len(received) >= 60 and len(lost) == 3:
            break
        await asyncio.sleep(0.1)
    assert len(lost) == 3 and direct.retransmissions >= 3
    got = [f.data for f in received]
    first = video.sent.index(got[0])
    assert got == video.sent[first:first + len(got)]  # nothing missing, nothing out of order
    await asyncio.sleep(1.6)  # at least one RTCP sender report
    stats = await _receiver_of(subscriber, subscriber.getTransceivers()[0].receiver.track).getStats()
    reports = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
    assert reports and 0 < reports[0].packetsSent <= direct.packets_sent
    await router.close()


def test_rtp_timestamps_unwrap_late_ones_are_refused_and_a_restart_carries_on() -> None:
    from sfu.aiortc_adapter import _TimestampUnwrapper

    unwrap = _TimestampUnwrapper(48_000)
    assert [unwrap.map(t) for t in (0xFFFFFC40, 0xFFFFFFF0, 0x00000330, 0x00000720)] == [0, 944, 1776, 2784]
    assert unwrap.map(0x00000330) is None  # older than the newest: a late packet
    assert unwrap.map(0x00000B10) == 3792
    assert unwrap.map(0xF0000000) == 3793  # far behind: the sender started over, the count goes on
    assert unwrap.map(0xF00003C0) == 4753


def test_direct_srtp_calls_equal_pylibsrtps_own() -> None:
    """The SFU calls libsrtp through pylibsrtp's binding without its per-call wrapper: the same
    ciphertext as Session.protect, decrypted back, a replay and a forgery refused alike."""
    import os

    import pylibsrtp

    from sfu.aiortc_adapter import SrtpCalls

    key = os.urandom(28)

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction,
                                                         srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM))

    theirs, ours = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), SrtpCalls(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    receiver = SrtpCalls(session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    for seq in range(1, 4):
        plain = bytes([0x80, 96, 0, seq, 0, 0, 0, 1, 0, 0, 0, 7]) + os.urandom(1200)
        protected = ours.protect(plain)
        assert protected == theirs.protect(plain)
        assert receiver.unprotect(protected) == plain
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected)  # a replay
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected[:-1] + bytes([protected[-1] ^ 1]))  # a forged tag
    with pytest.raises(ValueError):
        ours.protect(bytes(4000))



def test_the_sped_up_remb_estimator_gives_every_estimate_the_stock_one_gives() -> None:
    """speed_up_estimator replaces two of the estimator's pieces (the rate window, the minimum
    frame period): same inputs, same REMBs, also when it takes over an estimator mid-stream."""
    for seed in (1, 2, 3):
        samples = estimator_samples(4000, seed)
        stock, fast, late = RemoteBitrateEstimator(), RemoteBitrateEstimator(), RemoteBitrateEstimator()
        speed_up_estimator(fast)
        expected, got, got_late = [], [], []
        for index, (arrival, send_time, size) in enumerate(samples):
            if index == 1500:
                speed_up_estimator(late)  # its window is full of the stock counter's buckets
            expected.append(stock.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
            got.append(fast.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
            got_late.append(late.add(arrival_time_ms=arrival, abs_send_time=send_time, payload_size=size, ssrc=7))
        estimates = [e for e in expected if e is not None]
        assert len(estimates) > 100 and len({bitrate for bitrate, _ in estimates}) > 50  # it really estimated
        assert got == expected
        assert got_late == expected


async def test_a_closed_forwarding_connection_is_freed(media_path: str, loopback_only: None) -> None:
    """The C Sender refers to aiortc's transport objects, which refer back to it: the collector
    must be able to follow those references, or every visit would leak its connections."""
    import gc
    import weakref

    publisher, sfu_in, sfu_out, subscriber = (RTCPeerConnection(rtc_configuration()) for _ in range(4))
    publisher.addTrack(ReplayTrack("video", VP8))
    router = Router("visit-freed", privileged=False)
    producers = _producers_from(sfu_in, router)
    await _negotiate(publisher, sfu_in)
    track = ForwardingTrack("video")
    consumer = router.consume(producers["video"], "resident-video", "peer")
    track.attach(consumer)
    forward_through(sfu_out.addTrack(track), track)
    await _negotiate(sfu_out, subscriber)
    for _ in range(50):
        if consumer.frames_delivered > 5:
            break
        await asyncio.sleep(0.1)
    assert consumer.frames_delivered > 5
    freed = weakref.ref(sfu_out)
    await router.close()
    for pc in (publisher, sfu_in, sfu_out, subscriber):
        await pc.close()
    del track, consumer, producers, publisher, sfu_in, sfu_out, subscriber
    await asyncio.sleep(0.2)
    gc.collect()
    assert freed() is None
