"""The SFU's per-packet cost without the network: microseconds of CPU per forwarded packet.

A publisher, the SFU's receiving and sending peer connections (real aiortc: ICE, DTLS, SRTP keys)
and a subscriber connect on loopback as in a visit. Then the publisher's socket is short-circuited
into the SFU's socket callback, the SFU's sends go to a sink socket, and pre-encoded 640x480 VP8 +
Opus frames are pushed through synchronously: SRTP decrypt, parse, REMB estimate, receiver
statistics, frame assembly, router, packetising, SRTP encrypt, sendto: everything the SFU does per
packet except receiving from the socket and the event loop's wake-ups. Steady enough to compare two
versions of the media path (benchmarks/forwarding.py measures the whole thing, noisily).

    .venv/bin/python benchmarks/forwarding_path.py [--frames 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from aiortc import RTCPeerConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.synthetic_media import AUDIO_CLOCK, VIDEO_CLOCK, ReplayPublisher, encode_opus, encode_vp8
from sfu.aiortc_adapter import (
    ForwardingTrack,
    FrameSender,
    contract,
    forward_through,
    install_fast_clock,
    native,
    restrict_host_candidates,
    rtc_configuration,
    send_pli,
    tap_receiver,
)
from sfu.router import EncodedFrame, Producer, Router, vp8_is_keyframe


class _IntoSfu:
    """Stands in for the publisher's socket: each datagram goes straight into the SFU's callback."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.packets = 0

    def sendto(self, data: bytes, addr: Any) -> None:
        self.packets += 1
        self.protocol.datagram_received(data, ("127.0.0.1", 9))


async def _negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


def _nominated(pc: RTCPeerConnection) -> Any:
    connection = contract.ice_connection(pc.getTransceivers()[0].sender.transport.transport)
    return contract.nominated_pairs(connection)[1]


async def main(frames: int, rounds: int) -> None:
    install_fast_clock()
    restrict_host_candidates(["127.0.0.1"])
    publisher, sfu_in, sfu_out, subscriber = (RTCPeerConnection(rtc_configuration()) for _ in range(4))
    vp8, opus = encode_vp8(frames=90), encode_opus(packets=150)
    publishers = {"audio": ReplayPublisher("audio", opus), "video": ReplayPublisher("video", vp8)}
    for replay in publishers.values():
        replay.publish(publisher)
    router = Router("bench", privileged=False)
    producers: dict[str, Producer] = {}

    @sfu_in.on("track")
    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in sfu_in.getTransceivers() if t.receiver.track is track)

        async def pli() -> None:
            await send_pli(receiver)

        producers[track.kind] = router.add_producer("visitor", track.kind, pli)
        tap_receiver(receiver, producers[track.kind].publish, producers[track.kind])  # as the SFU does

    await _negotiate(publisher, sfu_in)
    directs: dict[str, FrameSender] = {}
    for kind in ("audio", "video"):
        track = ForwardingTrack(kind)
        track.attach(router.consume(producers[kind], f"resident-{kind}", "peer"))
        directs[kind] = forward_through(sfu_out.addTrack(track), track)
    await _negotiate(sfu_out, subscriber)
    for replay in publishers.values():
        replay.start()
    for _ in range(100):  # ICE and DTLS up on both legs, media flowing
        if directs["video"].packets_sent > 30 and directs["audio"].packets_sent > 30:
            break
        await asyncio.sleep(0.1)
    for replay in publishers.values():
        replay.stop()
    await asyncio.sleep(0.2)

    # Short-circuit the publisher's socket into the SFU's callback; the SFU sends on its real socket
    # (from C when sfu._rtp_native is built) to a sink socket nobody reads (the kernel drops what
    # overflows), so the subscriber's own work is not counted.
    sfu_socket = _nominated(sfu_in).protocol
    into_sfu = _IntoSfu(sfu_socket)
    publisher_socket = _nominated(publisher).protocol
    real_transport = publisher_socket.transport
    publisher_socket.transport = into_sfu
    pub_video, pub_audio = publishers["video"]._direct, publishers["audio"]._direct
    for direct in (pub_video, pub_audio):
        direct._path = direct._writer_path = None  # the cached socket (and the writer's)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sfu_pair = _nominated(sfu_out)
    for direct in directs.values():
        direct._path = (sfu_pair, sfu_pair.protocol.transport, sink.getsockname(),
                        native.implementation.socket_target(sfu_pair.protocol.transport, sink.getsockname()))
        direct._writer_path = None
    for producer in producers.values():
        producer.reroute()  # the next frame goes through Python, which gives the C Senders the sink
    path = "C (sfu._rtp_native)" if native.implementation.routable else "Python (sfu._rtp_native not built)"

    def frames_to_send(n: int) -> list[tuple[Any, EncodedFrame]]:
        out_frames = []
        for i in range(n):
            data = vp8[i % len(vp8)]
            out_frames.append((pub_video, EncodedFrame("video", data, 100_000 + i * (VIDEO_CLOCK // 30), VIDEO_CLOCK,
                                                       vp8_is_keyframe(data), 0.0)))
            for k in range(2 if i % 3 else 1):  # 50 audio packets for 30 video frames
                a = opus[(i + k) % len(opus)]
                out_frames.append((pub_audio, EncodedFrame("audio", a, 100_000 + (i * 5 // 3 + k) * 960,
                                                           AUDIO_CLOCK, True, 0.0)))
        return out_frames

    def sequence_of(direct: FrameSender) -> int:
        return int(direct.writer.sequence)

    def set_stream(direct: FrameSender, sequence: int | None, ssrc: int) -> None:
        contract.set_sender_ssrc(direct.rtc_sender, ssrc)
        direct.reconfigure()  # the writer keeps its own copy
        if sequence is not None:
            direct.writer.sequence = sequence

    def run(into: Any, shift: int) -> float:
        into_sfu.protocol = into
        work = frames_to_send(frames)
        for _sender, frame in work:  # timestamps carry on from the previous round
            frame.timestamp += shift * (VIDEO_CLOCK // 30 if frame.kind == "video" else 1600)
        t0 = time.process_time()
        for sender, frame in work:
            sender.send_frame(frame)
        return time.process_time() - t0

    # Each round: the publisher's own cost (packetise + SRTP) with the SFU cut off, then the same
    # with the SFU; the difference is the SFU's. The best of the rounds is the least disturbed.
    null = type("Null", (), {"datagram_received": lambda self, d, a: None})()
    costs = []
    for round_ in range(rounds):
        # The null round sends on other SSRCs (SRTP refuses to protect a sequence number twice),
        # and the real streams carry on where they were: the SFU sees no gap.
        saved = [(d, sequence_of(d), contract.sender_ssrc(d.rtc_sender)) for d in (pub_video, pub_audio)]
        for d, _seq, ssrc in saved:
            set_stream(d, None, ssrc ^ (0x10000 << round_))
        publisher_cost = run(null, 2 * round_ * frames)
        for d, seq, ssrc in saved:
            set_stream(d, seq, ssrc)
        into_sfu.packets = 0
        sent_before = sum(d.packets_sent for d in directs.values())
        costs.append(run(sfu_socket, (2 * round_ + 1) * frames) - publisher_cost)
        packets_out = sum(d.packets_sent for d in directs.values()) - sent_before
    sfu, packets_in = min(costs), into_sfu.packets
    print(f"packets in {packets_in}, packets out {packets_out} per round, {rounds} rounds; sending in {path}")
    print(f"SFU CPU per packet forwarded (in + out, SRTP both ways, sendto): {sfu / packets_in * 1e6:.1f} us "
          f"(rounds: {', '.join(f'{c / packets_in * 1e6:.1f}' for c in costs)})")
    print(f"SFU CPU per 2-party room at 30 fps + 50 audio packets/s each way: "
          f"{sfu / packets_in * 2 * (packets_in / frames * 30):.4f} cores (plus receiving and wake-ups)")
    publisher_socket.transport = real_transport
    sink.close()
    await router.close()
    for pc in (publisher, sfu_in, sfu_out, subscriber):
        await pc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the SFU's per-packet CPU without the network")
    parser.add_argument("--frames", type=int, default=3000, help="video frames per round (plus their audio)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    uvloop.run(main(args.frames, args.rounds))
