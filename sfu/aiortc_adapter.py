"""The one place the SFU reaches into aiortc and aioice internals.

aiortc's public API decodes every received frame and encodes every sent one. An SFU must not:
it takes each frame encoded, just after the depacketiser and jitter buffer, and sends it encoded.
Everything here depends on private details of aiortc 1.16 (pinned in pyproject.toml); the
contract tests in tests/sfu/test_aiortc_adapter.py fail loudly if an upgrade changes them.

- `tap_receiver`: replace a receiver's private decoder queue with a tap that hands
  `EncodedFrame`s to a callback on the event loop, and end aiortc's decoder thread. Audio gets a
  jitter buffer without prefetch (aiortc's default holds ~80 ms; an SFU need not hold audio);
  video gets `MarkerJitterBuffer`, which releases a frame at its last packet (RTP marker bit)
  instead of when the next frame's first packet arrives (~33 ms later at 30 fps).
- `send_pli`: ask the publisher for a keyframe (RTCP PLI to each SSRC it sends from).
- `ForwardingTrack`: a track whose `recv()` yields `av.Packet`s, which RTCRtpSender
  packetises without encoding (pts and time_base set; keyframe flag unused by the sender).
- `route_keyframe_requests`: a subscriber's PLI reaches `RTCRtpSender._send_keyframe`, which
  only affects encoding; redirect it to the consumer so the SFU asks the publisher instead.
- `relay_bandwidth_estimates` / `clamp_publisher_remb`: a subscriber's REMB (its link's
  estimate) is relayed to the publisher, capping the REMB aiortc's receiver sends, so the
  publisher's encoder adapts to the slowest receiver.
- `install_fast_clock`: aiortc reads the wall clock through `datetime` objects for every packet
  (abs-send-time, arrival times); integer arithmetic on `time.time()` gives the same values.
- `restrict_host_candidates`: aioice gathers every non-loopback address; the SFU announces only
  the configured ones (tests use 127.0.0.1).
- `restrict_udp_ports`: aioice binds an ephemeral port per connection; a firewall-friendly SFU
  binds only in the configured range.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import types
from collections.abc import Callable, Coroutine, Sequence
from fractions import Fraction
from typing import Any

import aioice.ice
import aiortc.clock
import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci, unpack_remb_fci

from sfu.router.consumer import Consumer, ConsumerClosedError
from sfu.router.frames import EncodedFrame, Kind, vp8_is_keyframe

OnFrame = Callable[[EncodedFrame], None]


class AdapterContractError(RuntimeError):
    """aiortc no longer has the internals this adapter relies on (see the module docstring)."""


def _private(obj: object, cls: type, name: str) -> Any:
    attr = f"_{cls.__name__}__{name}"
    if not hasattr(obj, attr):
        raise AdapterContractError(f"{cls.__name__}.__{name} is gone: aiortc changed, update sfu/aiortc_adapter.py")
    return getattr(obj, attr)


class _EncodedFrameTap:
    """Stands in for the receiver's decoder queue: `put((codec, JitterFrame))` from the loop."""

    def __init__(self, kind: Kind, on_frame: OnFrame, loop: asyncio.AbstractEventLoop) -> None:
        self.kind = kind
        self.on_frame = on_frame
        self.loop = loop
        self.frames = 0

    def put(self, item: Any) -> None:
        if item is None:  # aiortc stopping its (already finished) decoder thread
            return
        codec, jitter_frame = item
        data = jitter_frame.data
        if self.kind == "video":
            if codec.mimeType.lower() != "video/vp8":
                raise AdapterContractError(f"only VP8 video is forwarded, got {codec.mimeType}")
            keyframe = vp8_is_keyframe(data)
        else:
            keyframe = True
        self.frames += 1
        self.on_frame(EncodedFrame(kind=self.kind, data=data, timestamp=jitter_frame.timestamp,
                                   clock_rate=codec.clockRate, keyframe=keyframe, received_at=time.monotonic()))


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, releasing each frame as soon as its marker packet completes it.
    A frame with a hole waits, as before, for retransmission or for the buffer to move on."""

    _newest: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        seq = packet.sequence_number
        late = self._newest is not None and 0 < (self._newest - seq) % 65536 < 32768  # filled a hole
        if not late:
            self._newest = seq
        if frame is None and (packet.marker or late):
            frame = self._release_completed_frame()
        return pli_flag, frame

    def _release_completed_frame(self) -> JitterFrame | None:
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                                   timestamp=packet.timestamp)
        return None


def tap_receiver(receiver: RTCRtpReceiver, on_frame: OnFrame) -> None:
    """From the moment the receiver starts, deliver its encoded frames to `on_frame`; never decode."""
    kind: Kind = "video" if receiver.track.kind == "video" else "audio"
    _private(receiver, RTCRtpReceiver, "decoder_queue")  # fail now, not at the first packet
    original_receive = receiver.receive

    async def receive(parameters: Any) -> None:
        await original_receive(parameters)
        # No await between starting aiortc's decoder thread and replacing its queue: no frame
        # can reach the decoder.
        decoder_queue = _private(receiver, RTCRtpReceiver, "decoder_queue")
        receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameTap(  # type: ignore[attr-defined]
            kind, on_frame, asyncio.get_running_loop())
        decoder_queue.put(None)  # ends aiortc's decoder thread (and its decoded-track output)
        jitter_buffer = _private(receiver, RTCRtpReceiver, "jitter_buffer")
        receiver._RTCRtpReceiver__jitter_buffer = (  # type: ignore[attr-defined]
            JitterBuffer(capacity=16, prefetch=0) if kind == "audio"
            else MarkerJitterBuffer(capacity=jitter_buffer.capacity, is_video=True))

    receiver.receive = receive  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver) -> None:
    """Ask the publisher for a keyframe on every SSRC it is sending from."""
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)


class ForwardingTrack(MediaStreamTrack):
    """A sender's track for the whole life of a peer connection: it forwards the frames of
    whichever consumer is attached (none yet, the other party's, a rejoined party's), so the
    sender never stops and no renegotiation is needed when the other side comes and goes (S5).
    RTCRtpSender sends the `av.Packet`s it yields without encoding them."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._consumer: Consumer | None = None
        self._attached = asyncio.Event()

    @property
    def consumer(self) -> Consumer | None:
        return self._consumer

    def attach(self, consumer: Consumer | None) -> None:
        if self._consumer is not None and self._consumer is not consumer:
            self._consumer.close()
        self._consumer = consumer
        if consumer is None:
            self._attached.clear()
        else:
            self._attached.set()

    def request_keyframe(self) -> None:
        if self._consumer is not None:
            self._consumer.request_keyframe()

    async def recv(self) -> av.Packet:
        while True:
            consumer = self._consumer
            if consumer is None or consumer.closed:
                self._attached.clear()
                await self._attached.wait()
                continue
            try:
                frame = await consumer.next_frame()
            except ConsumerClosedError:
                continue
            packet = av.Packet(frame.data)
            packet.pts = frame.timestamp
            packet.time_base = Fraction(1, frame.clock_rate)
            return packet

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        super().stop()


def route_keyframe_requests(sender: RTCRtpSender, track: ForwardingTrack) -> None:
    _private(sender, RTCRtpSender, "force_keyframe")
    sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]


def relay_bandwidth_estimates(sender: RTCRtpSender, track: ForwardingTrack) -> None:
    """A subscriber's REMB reaches the sender, which would only retune an encoder we never use:
    hand the estimate to the attached consumer, so the producer can relay it upstream."""
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                bitrate, _ssrcs = unpack_remb_fci(packet.fci)
                if track.consumer is not None:
                    track.consumer.report_bandwidth(bitrate)
        await original(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def clamp_publisher_remb(receiver: RTCRtpReceiver,
                         limit: Callable[[], int | None]) -> Callable[[int], Coroutine[Any, Any, None]]:
    """The REMB the SFU sends a publisher never exceeds what its slowest subscriber can take.
    Returns a coroutine function that sends such a REMB at once (when a subscriber's link drops)."""
    original = receiver._send_rtcp

    async def send(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                cap = limit()
                if cap is not None and cap < bitrate:
                    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=packet.media_ssrc,
                                            fci=pack_remb_fci(cap, ssrcs))
        await original(packet)

    receiver._send_rtcp = send  # type: ignore[method-assign]

    async def send_limit(bitrate: int) -> None:
        rtcp_ssrc = _private(receiver, RTCRtpReceiver, "rtcp_ssrc")
        ssrcs = [s.source for s in receiver.getSynchronizationSources()]
        if rtcp_ssrc is not None and ssrcs:
            await original(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                          fci=pack_remb_fci(bitrate, ssrcs)))

    return send_limit


_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)


def _current_ms() -> int:
    return int((time.time() + _NTP_UNIX_OFFSET) * 1000)


def _current_ntp_time() -> int:
    now = time.time() + _NTP_UNIX_OFFSET
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * 4294967296)


def install_fast_clock() -> None:
    """Per-packet clock reads without building datetimes (process-wide, idempotent)."""
    for name in ("current_ms", "current_ntp_time"):
        if not callable(getattr(aiortc.clock, name, None)):
            raise AdapterContractError(f"aiortc.clock.{name} is gone: aiortc changed, update sfu/aiortc_adapter.py")
    aiortc.clock.current_ms = _current_ms
    aiortc.clock.current_ntp_time = _current_ntp_time


_original_get_host_addresses = aioice.ice.get_host_addresses


def restrict_host_candidates(addresses: Sequence[str]) -> Callable[[], None]:
    """Gather host candidates only on `addresses` (process-wide). Returns an undo function."""
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses

    def undo() -> None:
        aioice.ice.get_host_addresses = _original_get_host_addresses

    return undo


class _PortRangeLoop:
    """The running loop as aioice's candidate gathering sees it: a UDP socket asked for on port 0
    is bound to the next free port of the range instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: range, cursor: itertools.count[int]) -> None:
        self._loop = loop
        self._ports = ports
        self._cursor = cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, protocol_factory: Any, local_addr: Any = None, **kwargs: Any) -> Any:
        if local_addr is None or local_addr[1] != 0:
            return await self._loop.create_datagram_endpoint(protocol_factory, local_addr=local_addr, **kwargs)
        for _ in self._ports:
            port = self._ports[next(self._cursor) % len(self._ports)]
            try:
                return await self._loop.create_datagram_endpoint(protocol_factory, local_addr=(local_addr[0], port),
                                                                 **kwargs)
            except OSError:
                continue
        logging.getLogger(__name__).warning("no free UDP port in %d-%d on %s", self._ports.start,
                                            self._ports.stop - 1, local_addr[0])
        raise OSError(f"no free UDP port in {self._ports.start}-{self._ports.stop - 1}")


def restrict_udp_ports(first: int, last: int) -> Callable[[], None]:
    """Bind the SFU's ICE sockets only to ports first..last (process-wide). Returns an undo function."""
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"bad UDP port range {first}-{last}")
    ports, cursor = range(first, last + 1), itertools.count()
    if aioice.ice.asyncio is not asyncio:
        raise AdapterContractError("aioice.ice.asyncio is already wrapped")
    proxy = types.ModuleType("asyncio")
    proxy.__getattr__ = lambda name: getattr(asyncio, name)  # type: ignore[method-assign]
    proxy.get_running_loop = lambda: _PortRangeLoop(asyncio.get_running_loop(), ports, cursor)  # type: ignore[attr-defined]
    aioice.ice.asyncio = proxy

    def undo() -> None:
        aioice.ice.asyncio = asyncio

    return undo


def rtc_configuration(ice_servers: Sequence[dict[str, Any]] = ()) -> RTCConfiguration:
    """Only the configured ICE servers (aiortc would add a public STUN server otherwise)."""
    return RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers])
