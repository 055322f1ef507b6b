"""The frame tap: a receiver's encoded frames, handed over from the socket callback, never decoded.

`tap_receiver` ends aiortc's decoder thread when the receiver starts and puts a tap in its place:
the Python `PythonFrameTap` or the C `Tap` (`native.implementation`). The socket takeover
(`socket_takeover.py`) routes each decrypted RTP packet to it synchronously. The tap does what
aiortc's receiver does with each RTP packet for the publisher's sake (REMB estimate, RTCP receiver
statistics, NACKs, RTX unwrapping, PLI after lost frames) and hands each complete encoded frame
to `on_frame`: audio packets are frames as they are (an SFU need not hold audio), video frames
come from a `FrameAssembler` at their last packet (RTP marker bit), not ~33 ms later when the
next frame begins, as aiortc's jitter buffer releases them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiortc.clock
from aiortc import RTCRtpReceiver
from aiortc.codecs import is_rtx
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from sfu.aiortc_adapter import contract, native
from sfu.aiortc_adapter.estimator import speed_up_estimator
from sfu.aiortc_adapter.rtp_parsing import ReceivedRtp
from sfu.aiortc_adapter.socket_takeover import TAP_ATTRIBUTE, take_rtp_from_sockets, untake_tap
from sfu.router.frames import EncodedFrame, Kind, vp8_is_keyframe
from sfu.router.producer import Producer

OnFrame = Callable[[EncodedFrame], None]


class _TimestampUnwrapper:
    """RTP timestamps (32 bits, random origin) to a count from 0 that never wraps and never goes
    back. A timestamp a little older than the newest (under half a second) is a late packet and
    is reported as None: forwarding it out of order would only confuse the receiver's jitter
    buffer. A larger jump back is the sender starting over: the count carries on from there."""

    def __init__(self, clock_rate: int) -> None:
        self._late = clock_rate // 2
        self._last: int | None = None
        self._mapped = 0

    def map(self, timestamp: int) -> int | None:
        if self._last is None:
            self._last = timestamp
            return 0
        delta = (timestamp - self._last) & 0xFFFFFFFF
        if delta >= 0x80000000:  # behind the newest
            if 0x100000000 - delta <= self._late:
                return None
            delta = 1
        self._last = timestamp
        self._mapped += delta
        return self._mapped


class PythonFrameTap:
    """Stands in for the RTP handler of aiortc's `RTCRtpReceiver`, called synchronously for each RTP packet
    straight from the socket callback (`socket_takeover`). It keeps what the receiver does
    for the publisher's sake (REMB estimate, RTCP receiver statistics, NACKs, RTX unwrapping,
    PLI after lost frames) and hands each complete encoded frame to `on_frame`: audio packets
    are frames as they are (no jitter buffer: the SFU need not hold audio), video frames come
    from a `FrameAssembler` the moment they are complete."""

    def __init__(self, receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_frame = on_frame
        self.loop = asyncio.get_running_loop()
        tables = contract.receiver_tables(receiver)
        self._receiving = contract.receiver_enabled
        self._estimator = tables.remote_bitrate_estimator
        if self._estimator is not None:
            speed_up_estimator(self._estimator)
        self._active_ssrc = tables.active_ssrc
        self._codecs = tables.codecs
        self._streams = tables.remote_streams
        self._rtx_ssrc = tables.rtx_ssrc
        twins = native.implementation  # StreamStatistics, NackGenerator, FrameAssembler: in C if built
        self._statistics: Callable[[int], Any] = twins.stream_statistics
        self._nacks = twins.nack_generator(tables.nack_generator)
        self._rtx_payload_types = {pt for pt, codec in self._codecs.items() if is_rtx(codec)}
        self._vp8_payload_types = {pt for pt, codec in self._codecs.items() if codec.mimeType.lower() == "video/vp8"}
        self._frames: Any = twins.frame_assembler() if kind == "video" else None
        self._frames_lost = 0
        self._waiting_for_keyframe = False  # frames were lost: deltas cannot be decoded until a keyframe
        self._timestamps = _TimestampUnwrapper(90_000 if kind == "video" else 48_000)
        self._ssrc_noted_at: dict[int, int] = {}
        self._sample_timestamp: int | None = None  # the frame whose packets the estimator's next sample sums
        self._sample_bytes = self._sample_send_time = self._sample_arrival_ms = self._sample_ssrc = 0

    def handle(self, packet: ReceivedRtp, arrival_ms: int) -> None:
        receiver = self.receiver
        if not self._receiving(receiver):
            return
        if self._estimator is not None and packet.abs_send_time is not None:
            self._estimate(packet, arrival_ms)
        ssrc = packet.ssrc
        if arrival_ms - self._ssrc_noted_at.get(ssrc, -10_000) >= 1000:  # getSynchronizationSources()
            self._ssrc_noted_at[ssrc] = arrival_ms
            self._active_ssrc[ssrc] = aiortc.clock.current_datetime()
        payload_type = packet.payload_type
        codec = self._codecs.get(payload_type)
        if codec is None:
            return
        stats = self._streams.get(ssrc)
        if stats is None:
            stats = self._streams[ssrc] = self._statistics(codec.clockRate)  # read by aiortc's RTCP reports
        stats.add(packet)  # reads sequence_number and timestamp
        if payload_type in self._rtx_payload_types:
            original_ssrc = self._rtx_ssrc.get(ssrc)
            apt = codec.parameters.get("apt")
            if original_ssrc is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in self._codecs:
                return
            packet = ReceivedRtp(apt, packet.marker, int.from_bytes(packet.payload[:2], "big"), packet.timestamp,
                                  original_ssrc, packet.payload[2:])  # RFC 4588: the original sequence number first
            codec = self._codecs[apt]
        if self._nacks is not None and self._nacks.add(packet):
            self.loop.create_task(contract.send_rtcp_nack(receiver, packet.ssrc, sorted(self._nacks.missing)))
        assembler = self._frames
        if assembler is None:  # audio: one packet, one frame
            if packet.payload:
                self._deliver(codec, packet.payload, packet.timestamp)
            return
        if codec.payloadType not in self._vp8_payload_types:
            return  # the room negotiates VP8 only; anything else cannot be forwarded to the other party
        frames = assembler.add_vp8(packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload)
        if assembler.frames_lost != self._frames_lost:  # a retransmission never came: start again at a keyframe
            self._frames_lost = assembler.frames_lost
            self._waiting_for_keyframe = True
            self.loop.create_task(contract.send_rtcp_pli(receiver, packet.ssrc))
        if frames is not None:
            for timestamp, frame in frames:
                self._deliver(codec, frame, timestamp)

    def _estimate(self, packet: ReceivedRtp, arrival_ms: int) -> None:
        """Feed the REMB estimator one sample per frame (the frame's bytes, its last packet's send
        and arrival times) instead of one per packet. Its inter-arrival groups are 5 ms of send
        time, so a frame sent at once was one group anyway; the estimate is the same for a
        fraction of the calls."""
        if packet.timestamp != self._sample_timestamp:
            self._feed_estimator()
            self._sample_timestamp = packet.timestamp
        self._sample_bytes += len(packet.payload) + packet.padding_size
        self._sample_send_time, self._sample_arrival_ms = packet.abs_send_time or 0, arrival_ms
        self._sample_ssrc = packet.ssrc
        if packet.marker:
            self._feed_estimator()

    def _feed_estimator(self) -> None:
        if self._sample_bytes:
            remb = self._estimator.add(abs_send_time=self._sample_send_time, arrival_time_ms=self._sample_arrival_ms,
                                       payload_size=self._sample_bytes, ssrc=self._sample_ssrc)
            if remb is not None:
                self._send_remb(*remb)
        self._sample_bytes = 0
        self._sample_timestamp = None

    def _deliver(self, codec: Any, data: bytes, rtp_timestamp: int) -> None:
        timestamp = self._timestamps.map(rtp_timestamp)
        if timestamp is None:
            return
        keyframe = vp8_is_keyframe(data) if self.kind == "video" else True
        if self._waiting_for_keyframe:
            if not keyframe:
                return
            self._waiting_for_keyframe = False
        self.on_frame(EncodedFrame(kind=self.kind, data=data, timestamp=timestamp, clock_rate=codec.clockRate,
                                   keyframe=keyframe, received_at=time.monotonic()))

    def _send_remb(self, bitrate: int, ssrcs: list[int]) -> None:
        _send_remb(self.receiver, self.loop, bitrate, ssrcs)


def c_frame_tap(receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame) -> Any:
    """`PythonFrameTap` in C (`sfu._rtp_native.Tap`): the same duties, aiortc's REMB estimator included
    (`sfu._rtp_native.BitrateEstimator`), with Python called back only for what needs it (each
    complete frame unless routed past Python, a NACK, PLI or REMB to send, an SSRC seen again
    after a second)."""
    c = native.implementation.module
    loop = asyncio.get_running_loop()
    tables = contract.receiver_tables(receiver)
    active_ssrc, codecs = tables.active_ssrc, tables.codecs
    nacks = c.NackGenerator() if tables.nack_generator is not None else None
    table = []
    for payload_type, codec in codecs.items():
        apt = codec.parameters.get("apt")
        apt = apt if isinstance(apt, int) and apt in codecs else -1
        table.append((payload_type, codec.clockRate, is_rtx(codec), apt, codec.mimeType.lower() == "video/vp8"))
    spawn = loop.create_task  # RTCP goes out through aiortc's coroutines

    def on_nack(ssrc: int) -> None:
        assert nacks is not None
        spawn(contract.send_rtcp_nack(receiver, ssrc, sorted(nacks.missing)))

    def on_pli(ssrc: int) -> None:
        spawn(contract.send_rtcp_pli(receiver, ssrc))

    def on_ssrc(ssrc: int) -> None:  # getSynchronizationSources()
        active_ssrc[ssrc] = aiortc.clock.current_datetime()

    def on_remb(bitrate: int, ssrcs: list[int]) -> None:
        _send_remb(receiver, loop, bitrate, ssrcs)

    estimator = c.BitrateEstimator() if tables.remote_bitrate_estimator is not None else None
    return c.Tap(kind == "video", receiver, tables.remote_streams, tables.rtx_ssrc, nacks, table, EncodedFrame, kind,
                 on_frame, on_nack, on_pli, on_ssrc, estimator, on_remb)


def _send_remb(receiver: RTCRtpReceiver, loop: asyncio.AbstractEventLoop, bitrate: int, ssrcs: list[int]) -> None:
    rtcp_ssrc = contract.receiver_rtcp_ssrc(receiver)
    if rtcp_ssrc is not None:  # through the receiver's RTCP output, so clamp_publisher_remb applies
        loop.create_task(contract.send_rtcp(receiver, RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs))))


def tap_receiver(receiver: RTCRtpReceiver, on_frame: OnFrame, producer: Producer | None = None) -> None:
    """From the moment the receiver starts, deliver its encoded frames to `on_frame`; never decode.
    With `producer` (the one `on_frame` publishes to) and the C implementation, frames may also
    bypass Python altogether while the producer allows it (`sfu.router.fast_path`)."""
    kind: Kind = "video" if receiver.track.kind == "video" else "audio"
    contract.decoder_queue(receiver)  # fail now, not at the first packet
    start = native.implementation.pick(c=_start_c_tap, python=_start_python_tap)
    original_receive, original_stop = receiver.receive, receiver.stop
    stop_tap: Callable[[], None] = lambda: None  # noqa: E731

    async def receive(parameters: Any) -> None:
        nonlocal stop_tap
        await original_receive(parameters)
        # aiortc calls receive() once ICE and DTLS are up. No await between starting its decoder
        # thread and ending it: no frame can reach the decoder.
        contract.decoder_queue(receiver).put(None)
        stop_tap = start(receiver, kind, on_frame, producer)

    async def stop() -> None:
        stop_tap()
        await original_stop()

    receiver.receive = receive  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]


def _start_python_tap(receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame,
                      producer: Producer | None) -> Callable[[], None]:
    setattr(receiver, TAP_ATTRIBUTE, PythonFrameTap(receiver, kind, on_frame))
    take_rtp_from_sockets(receiver.transport)
    return lambda: None


def _start_c_tap(receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame,
                 producer: Producer | None) -> Callable[[], None]:
    """The C Tap, and the producer's fast path through it; returns what stops both."""
    tap = c_frame_tap(receiver, kind, on_frame)
    setattr(receiver, TAP_ATTRIBUTE, tap)
    take_rtp_from_sockets(receiver.transport)
    if producer is not None:
        producer.attach_fast_path(tap)

    def stop() -> None:
        tap.route(None)
        untake_tap(receiver.transport, tap)

    return stop


async def send_pli(receiver: RTCRtpReceiver) -> None:
    """Ask the publisher for a keyframe on every SSRC it is sending from."""
    for source in receiver.getSynchronizationSources():
        await contract.send_rtcp_pli(receiver, source.source)

