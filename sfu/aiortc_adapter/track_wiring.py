"""Track wiring: a sender's placeholder track, the consumer that feeds it, and RTCP routed back.

`forward_through(rtc_sender, track)` makes an RTCRtpSender carry a `ForwardingTrack`'s frames
through a `FrameSender`, and reroutes what a subscriber says back: its PLI (which aiortc would
hand to an encoder we never use) becomes a keyframe request to the producer; its REMB (its
link's estimate) goes to the consumer, and `clamp_publisher_remb` caps the REMB the SFU sends
the publisher at the slowest subscriber's, so the publisher's encoder adapts to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci, unpack_remb_fci

from sfu.aiortc_adapter import contract
from sfu.aiortc_adapter.send import FrameSender
from sfu.router.consumer import Consumer
from sfu.router.frames import EncodedFrame, Kind

OnFrame = Callable[[EncodedFrame], None]
RtcpSend = Callable[[Any], Coroutine[Any, Any, None]]


class ForwardingTrack(MediaStreamTrack):
    """A sender's track for the whole life of a peer connection: it forwards the frames of
    whichever consumer is attached (none yet, the other party's, a rejoined party's), so the
    sender never stops and no renegotiation is needed when the other side comes and goes (S5).

    Frames do not pass through `recv()`: the attached consumer pushes each one to the
    `FrameSender` bound by `forward_through`, from the callback that received it. `recv()`
    only keeps aiortc's sender task waiting."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._consumer: Consumer | None = None
        self._frame_sender: FrameSender | None = None
        self._stopped = asyncio.Event()
        self._on_frame_sent: OnFrame | None = None

    @property
    def consumer(self) -> Consumer | None:
        return self._consumer

    @property
    def packets_retransmitted(self) -> int:
        return self._frame_sender.retransmissions if self._frame_sender is not None else 0

    @property
    def datagrams_refused(self) -> int:
        """Datagrams the socket would not take (send buffer full): lost before the network."""
        return self._frame_sender.send_failures if self._frame_sender is not None else 0

    @property
    def on_frame_sent(self) -> OnFrame | None:
        """Called with each frame sent (e.g. join-to-first-frame); set it to None when done."""
        return self._on_frame_sent

    @on_frame_sent.setter
    def on_frame_sent(self, callback: OnFrame | None) -> None:
        self._on_frame_sent = callback
        self._wire()

    def attach(self, consumer: Consumer | None) -> None:
        if consumer is self._consumer:
            return
        if self._consumer is not None:
            self._consumer.close()
        self._consumer = consumer
        if consumer is not None and self._frame_sender is not None:
            self._frame_sender.source_changed()
        self._wire()

    @property
    def frame_sender(self) -> FrameSender | None:
        """What sends this track's frames, once `forward_through` bound it."""
        return self._frame_sender

    def _bind(self, frame_sender: FrameSender) -> None:
        self._frame_sender = frame_sender
        self._wire()

    def _wire(self) -> None:
        """The consumer's sink: the frame sender itself, one call per frame (and its C writer as
        the fast path's output), unless someone wants to hear of each frame sent."""
        if self._consumer is not None:
            frame_sender = self._frame_sender
            if frame_sender is not None and self._on_frame_sent is None:
                self._consumer.connect(frame_sender.send_frame, frame_sender.output)
            else:
                self._consumer.connect(self._send, None)

    def _send(self, frame: EncodedFrame) -> bool:
        frame_sender = self._frame_sender
        if frame_sender is None or not frame_sender.send_frame(frame):
            return False
        if self._on_frame_sent is not None:
            self._on_frame_sent(frame)
        return True

    def request_keyframe(self) -> None:
        if self._consumer is not None:
            self._consumer.request_keyframe()

    async def recv(self) -> av.Packet:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        self._stopped.set()
        super().stop()


def forward_through(rtc_sender: RTCRtpSender, track: ForwardingTrack) -> FrameSender:
    """Make `rtc_sender` carry `track`'s forwarded frames: sent directly (`FrameSender`), the
    receiver's keyframe requests and bandwidth estimates routed back to the producer."""
    frame_sender = FrameSender(rtc_sender, "video" if track.kind == "video" else "audio")
    track._bind(frame_sender)
    contract.redirect_keyframe_requests(rtc_sender, track.request_keyframe)  # a subscriber's PLI
    _relay_bandwidth_estimates(rtc_sender, track)
    return frame_sender


def _relay_bandwidth_estimates(rtc_sender: RTCRtpSender, track: ForwardingTrack) -> None:
    """A subscriber's REMB reaches the sender, which would only retune an encoder we never use:
    hand the estimate to the attached consumer, so the producer can relay it upstream."""

    def relaying(original: RtcpSend) -> RtcpSend:
        async def handle(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                with contextlib.suppress(ValueError):
                    bitrate, _ssrcs = unpack_remb_fci(packet.fci)
                    if track.consumer is not None:
                        track.consumer.report_bandwidth(bitrate)
            await original(packet)

        return handle

    contract.wrap_rtcp_handler(rtc_sender, relaying)


def clamp_publisher_remb(receiver: RTCRtpReceiver,
                         limit: Callable[[], int | None]) -> Callable[[int], Coroutine[Any, Any, None]]:
    """The REMB the SFU sends a publisher never exceeds what its slowest subscriber can take.
    Returns a coroutine function that sends such a REMB at once (when a subscriber's link drops)."""

    async def send(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
                cap = limit()
                if cap is not None and cap < bitrate:
                    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=packet.media_ssrc,
                                            fci=pack_remb_fci(cap, ssrcs))
        await original(packet)

    original = contract.replace_send_rtcp(receiver, send)

    async def send_limit(bitrate: int) -> None:
        rtcp_ssrc = contract.receiver_rtcp_ssrc(receiver)
        ssrcs = [s.source for s in receiver.getSynchronizationSources()]
        if rtcp_ssrc is not None and ssrcs:
            await original(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                          fci=pack_remb_fci(bitrate, ssrcs)))

    return send_limit
