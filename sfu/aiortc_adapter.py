"""The one place the SFU reaches into aiortc and aioice internals.

aiortc's public API decodes every received frame and encodes every sent one, and moves every
packet through queues and tasks. An SFU must not: it takes each frame encoded and sends it
encoded, and it does both in the socket callback that received the packet. Everything here
depends on private details of aiortc 1.16 and aioice 0.13 (pinned in pyproject.toml); the
contract tests in tests/sfu/test_aiortc_adapter.py fail loudly if an upgrade changes them.

Receiving (`tap_receiver`):
- `_take_rtp_from_sockets`: SRTP packets are decrypted, parsed (`parse_rtp`: the fixed header and
  abs-send-time only) and routed to the receiver's `_FrameTap` synchronously in aioice's datagram
  callback, instead of aioice's asyncio.Queue, the DTLS transport's task and three awaits per
  packet. DTLS, STUN and RTCP keep aiortc's path.
- `_FrameTap` does what `RTCRtpReceiver._handle_rtp_packet` does for the publisher's sake (REMB
  estimate, RTCP receiver statistics, NACKs, RTX unwrapping) and hands complete encoded frames
  to a callback; aiortc's decoder thread is ended when the receiver starts. Audio packets are
  frames as they are (no jitter buffer: an SFU need not hold audio); video frames come from
  `sfu.frame_assembler.FrameAssembler`, released at their last packet (RTP marker bit), not when
  the next frame's first packet arrives (~33 ms later at 30 fps) as aiortc's jitter buffer does.
- `send_pli`: ask the publisher for a keyframe (RTCP PLI to each SSRC it sends from).

Sending (`forward_through(sender, track)`):
- `DirectRtpSender` packetises each frame (`vp8_payloads`, as aiortc's packetiser; Opus as is),
  writes the RTP header with the negotiated extensions (mid, abs-send-time), protects it with the
  sender's SRTP session and sends it on the nominated ICE pair's socket, all in the call that
  delivered the frame. The RTCRtpSender it belongs to still negotiates, sends RTCP sender reports
  (from counters kept current here) and passes NACKs in, answered from a 512-packet history.
  When another producer starts feeding it (a party rejoined), its RTP clock carries on.
- `ForwardingTrack`: the sender's placeholder track; the consumer attached to it pushes frames.
- A subscriber's PLI reaches `RTCRtpSender._send_keyframe`, which only affects encoding: it is
  redirected to the consumer, so the SFU asks the publisher instead.
- `clamp_publisher_remb`: a subscriber's REMB (its link's estimate) is relayed to the publisher,
  capping the REMB the receiver sends, so the publisher's encoder adapts to the slowest receiver.

In C (`sfu/_rtp_native.c`, loaded by `native_rtp()`) the whole steady-state path: the socket's
callback is a `Demux` ingress that routes (SSRC, payload type) to a C `Tap` (`_FrameTap`'s duties,
aiortc's REMB estimator included), which sends each complete frame straight to the consumers' C
`Sender`s (`DirectRtpSender.output`) while the producer allows it (`sfu.router.fast_path`), and
otherwise hands it to Python as an `EncodedFrame`. Python adds the routes after aiortc's router
picked the receiver, and is called back for NACKs, PLIs, REMBs and SSRC notes. `_FrameTap`,
`parse_rtp`, `vp8_payloads`, `SrtpCalls`, `sfu.frame_assembler` and aiortc's own classes do the
same in Python: the reference the C is tested against (tests/sfu/test_native_tap.py,
test_rtp_native.py, test_frame_assembler.py) and the fallback if it was not built.

The process:
- `install_fast_clock`: aiortc reads the wall clock through `datetime` objects for every packet
  (abs-send-time, arrival times); integer arithmetic on `time.time()` gives the same values.
- `restrict_host_candidates`: aioice gathers every non-loopback address; the SFU announces only
  the configured ones (tests use 127.0.0.1).
- `restrict_udp_ports`: aioice binds an ephemeral port per connection; a firewall-friendly SFU
  binds only in the configured range.
- `announce_host_address`: behind a 1:1 NAT the SFU binds its private address but must put the
  public one in its SDP candidates (mediasoup's announced IP); aioice keeps the real address.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import itertools
import logging
import random
import struct
import time
import types
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import aioice.ice
import aiortc.clock
import aiortc.rtcicetransport
import av
import pylibsrtp
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceCandidate, RTCIceServer, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import is_rtx
from aiortc.mediastreams import MediaStreamError
from aiortc.rate import MIN_FRAME_PERIOD_HISTORY_LENGTH, OveruseEstimator, RateCounter, RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from pylibsrtp._binding import ffi as _srtp_ffi
from pylibsrtp._binding import lib as _srtp_lib

from sfu.frame_assembler import FrameAssembler
from sfu.router.consumer import Consumer
from sfu.router.frames import EncodedFrame, Kind, vp8_is_keyframe
from sfu.router.producer import Producer

OnFrame = Callable[[EncodedFrame], None]
_RTP_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


class AdapterContractError(RuntimeError):
    """aiortc no longer has the internals this adapter relies on (see the module docstring)."""


def _private(obj: object, cls: type, name: str) -> Any:
    attr = f"_{cls.__name__}__{name}"
    if not hasattr(obj, attr):
        raise AdapterContractError(f"{cls.__name__}.__{name} is gone: aiortc changed, update sfu/aiortc_adapter.py")
    return getattr(obj, attr)


# ---------------------------------------------------------------- receiving: encoded frames, synchronously


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


_native_module: Any = None
_native_checked = False


def native_rtp() -> Any:
    """`sfu._rtp_native` (the per-packet work in C, built by `pip install`), ready to call, or
    None if it was not built: the Python path below does the same, slower."""
    global _native_module, _native_checked
    if not _native_checked:
        _native_checked = True
        try:
            from sfu import _rtp_native  # type: ignore[attr-defined]
        except ImportError:
            logging.getLogger(__name__).warning("sfu._rtp_native is not built: forwarding in Python (slower)")
        else:
            def address(function: str) -> int:
                return int(_srtp_ffi.cast("uintptr_t", _srtp_ffi.addressof(_srtp_lib, function)))

            _rtp_native.set_srtp(address("srtp_protect"), address("srtp_unprotect"))
            _native_module = _rtp_native
    return _native_module


class SrtpCalls:
    """`pylibsrtp.Session.protect` / `unprotect` for one session, minus what they cost per call
    besides the cipher (a fresh `int *`, type and size checks, two more Python frames): the same
    libsrtp calls, on a buffer of our own. The session stays the owner of the libsrtp context."""

    _BUFFER = 2048  # a datagram (<= 1500) and its SRTP trailer

    def __init__(self, session: pylibsrtp.Session) -> None:
        handle = getattr(session, "_srtp", None)
        if handle is None:
            raise AdapterContractError("pylibsrtp.Session._srtp is gone: update sfu/aiortc_adapter.py")
        self.session = session  # keeps the libsrtp context alive
        self._context = handle[0]
        self.address = int(_srtp_ffi.cast("uintptr_t", self._context))  # for sfu._rtp_native
        self._cdata = _srtp_ffi.new("char[]", self._BUFFER)
        self._buffer = _srtp_ffi.buffer(self._cdata)
        self._length = _srtp_ffi.new("int *")

    def protect(self, packet: bytes) -> bytes:
        return self._call(_srtp_lib.srtp_protect, packet)

    def unprotect(self, packet: bytes) -> bytes:
        return self._call(_srtp_lib.srtp_unprotect, packet)

    def _call(self, function: Any, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        status = function(self._context, self._cdata, self._length)
        if status:
            errors = pylibsrtp.ERRORS
            raise pylibsrtp.Error(errors[status] if status < len(errors) else f"libsrtp error {status}")
        return self._buffer[0:self._length[0]]


class _ReceivedRtp:
    """What the receive path needs of one RTP packet. aiortc's `RtpPacket.parse` builds every
    header extension of every packet; this reads the fixed header and abs-send-time only."""

    __slots__ = ("_data", "abs_send_time", "marker", "padding_size", "payload", "payload_type",
                 "sequence_number", "ssrc", "timestamp")

    def __init__(self, payload_type: int, marker: int, sequence_number: int, timestamp: int, ssrc: int,
                 payload: bytes, padding_size: int = 0, abs_send_time: int | None = None) -> None:
        self.payload_type, self.marker, self.sequence_number = payload_type, marker, sequence_number
        self.timestamp, self.ssrc, self.payload = timestamp, ssrc, payload
        self.padding_size, self.abs_send_time = padding_size, abs_send_time
        self._data = b""  # the codec frame slice, once depayloaded (aiortc's jitter buffer reads it)

    def as_aiortc(self) -> RtpPacket:
        """The same packet as aiortc's own parser gives it (header extensions: abs-send-time only)."""
        packet = RtpPacket(payload_type=self.payload_type, marker=self.marker, sequence_number=self.sequence_number,
                           timestamp=self.timestamp, ssrc=self.ssrc, payload=self.payload)
        packet.padding_size = self.padding_size
        packet.extensions.abs_send_time = self.abs_send_time
        return packet


def parse_rtp(data: bytes, abs_send_time_id: int | None) -> _ReceivedRtp:
    """RFC 3550 fixed header, CSRCs skipped, RFC 8285 one-byte extensions searched for
    abs-send-time, padding removed. Raises ValueError for a malformed packet."""
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its header")
    first, second, sequence_number, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("not RTP version 2")
    pos = 12 + 4 * (first & 0x0F)
    abs_send_time = None
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP header extension truncated")
        profile, words = _EXTENSION_HEADER.unpack_from(data, pos)
        pos += 4
        end = pos + 4 * words
        if len(data) < end:
            raise ValueError("RTP header extension truncated")
        if profile == 0xBEDE and abs_send_time_id is not None:
            i = pos
            while i < end:
                element = data[i]
                if element == 0:  # padding
                    i += 1
                    continue
                element_id, size = element >> 4, (element & 0x0F) + 1
                if element_id == 15:
                    break
                if element_id == abs_send_time_id and size == 3:
                    abs_send_time = int.from_bytes(data[i + 1:i + 4], "big")
                    break
                i += 1 + size
        pos = end
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > len(data) - pos:
            raise ValueError("RTP padding length invalid")
    return _ReceivedRtp(second & 0x7F, second >> 7, sequence_number, timestamp, ssrc,
                        data[pos:len(data) - padding], padding, abs_send_time)


class _FrameTap:
    """Stands in for `RTCRtpReceiver._handle_rtp_packet`, called synchronously for each RTP packet
    straight from the socket callback (`_take_rtp_from_sockets`). It keeps what the receiver does
    for the publisher's sake (REMB estimate, RTCP receiver statistics, NACKs, RTX unwrapping,
    PLI after lost frames) and hands each complete encoded frame to `on_frame`: audio packets
    are frames as they are (no jitter buffer: the SFU need not hold audio), video frames come
    from a `FrameAssembler` the moment they are complete."""

    def __init__(self, receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame) -> None:
        self.receiver = receiver
        self.kind = kind
        self.on_frame = on_frame
        self.loop = asyncio.get_running_loop()
        self._estimator = _private(receiver, RTCRtpReceiver, "remote_bitrate_estimator")
        if self._estimator is not None:
            speed_up_estimator(self._estimator)
        self._active_ssrc: dict[int, Any] = _private(receiver, RTCRtpReceiver, "active_ssrc")
        self._codecs: dict[int, Any] = _private(receiver, RTCRtpReceiver, "codecs")
        self._streams: dict[int, Any] = _private(receiver, RTCRtpReceiver, "remote_streams")
        self._rtx_ssrc: dict[int, int] = _private(receiver, RTCRtpReceiver, "rtx_ssrc")
        self._nacks = _private(receiver, RTCRtpReceiver, "nack_generator")
        native = native_rtp()  # its StreamStatistics, NackGenerator, FrameAssembler: twins, in C
        self._statistics: Callable[[int], Any] = native.StreamStatistics if native is not None else StreamStatistics
        if native is not None and self._nacks is not None:
            self._nacks = native.NackGenerator()
        self._rtx_payload_types = {pt for pt, codec in self._codecs.items() if is_rtx(codec)}
        self._vp8_payload_types = {pt for pt, codec in self._codecs.items() if codec.mimeType.lower() == "video/vp8"}
        self._frames: Any = (native.FrameAssembler() if native is not None else FrameAssembler()) \
            if kind == "video" else None
        self._frames_lost = 0
        self._waiting_for_keyframe = False  # frames were lost: deltas cannot be decoded until a keyframe
        self._timestamps = _TimestampUnwrapper(90_000 if kind == "video" else 48_000)
        self._ssrc_noted_at: dict[int, int] = {}
        self._sample_timestamp: int | None = None  # the frame whose packets the estimator's next sample sums
        self._sample_bytes = self._sample_send_time = self._sample_arrival_ms = self._sample_ssrc = 0

    def handle(self, packet: _ReceivedRtp, arrival_ms: int) -> None:
        receiver = self.receiver
        if not receiver._enabled:
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
            packet = _ReceivedRtp(apt, packet.marker, int.from_bytes(packet.payload[:2], "big"), packet.timestamp,
                                  original_ssrc, packet.payload[2:])  # RFC 4588: the original sequence number first
            codec = self._codecs[apt]
        if self._nacks is not None and self._nacks.add(packet):
            self.loop.create_task(receiver._send_rtcp_nack(packet.ssrc, sorted(self._nacks.missing)))
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
            self.loop.create_task(receiver._send_rtcp_pli(packet.ssrc))
        if frames is not None:
            for timestamp, frame in frames:
                self._deliver(codec, frame, timestamp)

    def _estimate(self, packet: _ReceivedRtp, arrival_ms: int) -> None:
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


class _WindowRateCounter(RateCounter):
    """aiortc's `RateCounter` (bytes in 1 ms buckets over a sliding window) with the same results
    for less work: the buckets are two lists of ints, and the milliseconds that slid out of the
    window are cleared by slices. aiortc clears them one `RateBucket` object per millisecond in a
    Python loop: ~33 iterations per sample at one sample per frame."""

    @classmethod
    def taking_over(cls, counter: RateCounter) -> _WindowRateCounter:
        """A counter in the same state as aiortc's `counter`."""
        fast = cls(counter._window_size, counter._scale)
        buckets = counter._buckets
        fast._counts = [bucket.count for bucket in buckets]
        fast._values = [bucket.value for bucket in buckets]
        fast._total_count, fast._total_value = counter._total.count, counter._total.value
        fast._origin_index, fast._origin_ms = counter._origin_index, counter._origin_ms
        return fast

    def reset(self) -> None:
        self._counts = [0] * self._window_size
        self._values = [0] * self._window_size
        self._total_count = self._total_value = 0
        self._origin_index = 0
        self._origin_ms: int | None = None

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        index = (self._origin_index + now_ms - self._origin_ms) % self._window_size
        self._counts[index] += 1
        self._values[index] += value
        self._total_count += 1
        self._total_value += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._total_count > 0 and active_window_size > 1:
                return round(self._scale * self._total_value / active_window_size)
        return None

    def _erase_old(self, now_ms: int) -> None:
        assert self._origin_ms is not None
        steps = now_ms - self._window_size + 1 - self._origin_ms
        if steps <= 0:
            return
        size, start = self._window_size, self._origin_index
        counts, values = self._counts, self._values
        if steps >= size:  # the whole window slid out
            counts[:] = [0] * size
            values[:] = [0] * size
            self._total_count = self._total_value = 0
        else:
            for first, last in ((start, min(start + steps, size)), (0, max(0, start + steps - size))):
                if last > first:
                    self._total_count -= sum(counts[first:last])
                    self._total_value -= sum(values[first:last])
                    counts[first:last] = [0] * (last - first)
                    values[first:last] = [0] * (last - first)
        self._origin_index = (start + steps) % size
        self._origin_ms += steps


def _min_frame_period(self: OveruseEstimator, ts_delta: float) -> float:
    """`OveruseEstimator.update_min_frame_period` with the same result: the smallest of the last
    60 timestamp deltas, by the builtin min() instead of a Python loop with a call per item."""
    history = self.ts_delta_hist
    if len(history) >= MIN_FRAME_PERIOD_HISTORY_LENGTH:
        del history[0]
    smallest = min(min(history), ts_delta) if history else ts_delta
    history.append(ts_delta)
    return smallest


def speed_up_estimator(estimator: RemoteBitrateEstimator) -> None:
    """Make aiortc's REMB estimator cheaper per sample; every estimate stays the same (contract
    tested against the stock estimator). It runs once per received video frame."""
    inner = getattr(estimator, "estimator", None)
    counter = getattr(estimator, "incoming_bitrate", None)
    if not isinstance(inner, OveruseEstimator) or not isinstance(getattr(inner, "ts_delta_hist", None), list) \
            or not isinstance(counter, RateCounter) or not hasattr(counter, "_buckets"):
        raise AdapterContractError("aiortc's RemoteBitrateEstimator changed: update sfu/aiortc_adapter.py")
    if not isinstance(counter, _WindowRateCounter):
        estimator.incoming_bitrate = _WindowRateCounter.taking_over(counter)
    inner.update_min_frame_period = types.MethodType(_min_frame_period, inner)  # type: ignore[method-assign]


def _native_tap(receiver: RTCRtpReceiver, kind: Kind, on_frame: OnFrame) -> Any:
    """`_FrameTap` in C (`sfu._rtp_native.Tap`): the same duties, aiortc's REMB estimator included
    (`sfu._rtp_native.BitrateEstimator`), with Python called back only for what needs it (each
    complete frame unless routed past Python, a NACK, PLI or REMB to send, an SSRC seen again
    after a second)."""
    native = native_rtp()
    loop = asyncio.get_running_loop()
    has_estimator = _private(receiver, RTCRtpReceiver, "remote_bitrate_estimator") is not None
    active_ssrc: dict[int, Any] = _private(receiver, RTCRtpReceiver, "active_ssrc")
    codecs: dict[int, Any] = _private(receiver, RTCRtpReceiver, "codecs")
    nacks = native.NackGenerator() if _private(receiver, RTCRtpReceiver, "nack_generator") is not None else None
    table = []
    for payload_type, codec in codecs.items():
        apt = codec.parameters.get("apt")
        apt = apt if isinstance(apt, int) and apt in codecs else -1
        table.append((payload_type, codec.clockRate, is_rtx(codec), apt, codec.mimeType.lower() == "video/vp8"))
    spawn = loop.create_task  # RTCP goes out through aiortc's coroutines

    def on_nack(ssrc: int) -> None:
        assert nacks is not None
        spawn(receiver._send_rtcp_nack(ssrc, sorted(nacks.missing)))

    def on_pli(ssrc: int) -> None:
        spawn(receiver._send_rtcp_pli(ssrc))

    def on_ssrc(ssrc: int) -> None:  # getSynchronizationSources()
        active_ssrc[ssrc] = aiortc.clock.current_datetime()

    def on_remb(bitrate: int, ssrcs: list[int]) -> None:
        _send_remb(receiver, loop, bitrate, ssrcs)

    return native.Tap(kind == "video", receiver, _private(receiver, RTCRtpReceiver, "remote_streams"),
                      _private(receiver, RTCRtpReceiver, "rtx_ssrc"), nacks, table, EncodedFrame, kind, on_frame,
                      on_nack, on_pli, on_ssrc, native.BitrateEstimator() if has_estimator else None, on_remb)


def _send_remb(receiver: RTCRtpReceiver, loop: asyncio.AbstractEventLoop, bitrate: int, ssrcs: list[int]) -> None:
    rtcp_ssrc = _private(receiver, RTCRtpReceiver, "rtcp_ssrc")
    if rtcp_ssrc is not None:  # through receiver._send_rtcp, so clamp_publisher_remb applies
        loop.create_task(receiver._send_rtcp(RtcpPsfbPacket(
            fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs))))


_TAP_ATTRIBUTE = "_openvisit_frame_tap"  # on a receiver: its _FrameTap (or the C Tap)
_TAKEN_ATTRIBUTE = "_openvisit_rtp_taken"  # on an aioice connection: its sockets' RTP is ours
_DEMUX_ATTRIBUTE = "_openvisit_demux"  # on an aioice connection: its sfu._rtp_native.Demux


def _take_rtp_from_sockets(dtls: RTCDtlsTransport) -> None:
    """Handle SRTP packets in the socket's own callback: decrypt, parse, route to the receiver's
    tap, all synchronously. aioice would try each datagram as a STUN message, queue it (an
    asyncio.Queue), wake the DTLS transport's task and await through three coroutines per packet.
    STUN, DTLS and RTCP still take aiortc's own path.

    With the C module, the socket's callback is a `Demux` ingress: RTP of an (SSRC, payload type)
    routed to a C Tap never enters Python. The first packet of each takes the Python path below,
    where aiortc's own router picks the receiver, and adds the route."""
    connection = dtls.transport._connection
    if getattr(connection, _TAKEN_ATTRIBUTE, False):
        return
    setattr(connection, _TAKEN_ATTRIBUTE, True)
    extensions = dtls._rtp_header_extensions_map
    extension_ids = _private(extensions, HeaderExtensionsMap, "ids")  # filled in as transceivers start
    rtp_router = dtls._rtp_router
    clock = aiortc.clock
    native = native_rtp()
    demux: Any = native.Demux() if native is not None else None
    setattr(connection, _DEMUX_ATTRIBUTE, demux)
    srtp: SrtpCalls | None = None  # for the transport's receiving session, once the handshake made it

    def take(not_rtp: Callable[[bytes, Any], None]) -> Callable[[bytes, Any], None]:
        def datagram_received(data: bytes, addr: Any) -> None:
            nonlocal srtp
            rx = dtls._rx_srtp
            if rx is None or len(data) < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
                not_rtp(data, addr)  # STUN, DTLS, RTCP, or RTP before the handshake completed
                return
            if srtp is None or srtp.session is not rx:
                srtp = SrtpCalls(rx)
            abs_send_time_id = extension_ids.abs_send_time
            if native is not None:
                abs_id = -1 if abs_send_time_id is None else abs_send_time_id
                demux.set_srtp(srtp.address, srtp, abs_id)
                fields = native.unprotect_rtp(srtp.address, data, abs_id)
                if fields is None:
                    return
                packet = _ReceivedRtp(*fields)
            else:
                try:
                    packet = parse_rtp(srtp.unprotect(data), abs_send_time_id)
                except (pylibsrtp.Error, ValueError):
                    return
            receiver = rtp_router.route_rtp(packet)  # type: ignore[arg-type]  # reads ssrc and payload_type
            tap: Any = getattr(receiver, _TAP_ATTRIBUTE, None)
            if isinstance(tap, _FrameTap):
                tap.handle(packet, clock.current_ms())
            elif tap is not None:  # the C Tap: from the next packet on, the ingress routes to it
                tap.handle(*fields, clock.current_ms())
                demux.route(packet.ssrc, packet.payload_type, tap)
            elif receiver is not None:  # not ours: aiortc's own handling
                asyncio.get_running_loop().create_task(
                    receiver._handle_rtp_packet(packet.as_aiortc(), clock.current_ms()))

        if demux is not None:
            return demux.ingress(datagram_received).datagram_received
        return datagram_received

    for protocol in connection._protocols:  # aioice's StunProtocol per gathered socket
        protocol.datagram_received = take(protocol.datagram_received)  # type: ignore[method-assign,assignment]


def tap_receiver(receiver: RTCRtpReceiver, on_frame: OnFrame, producer: Producer | None = None) -> None:
    """From the moment the receiver starts, deliver its encoded frames to `on_frame`; never decode.
    With `producer` (the one `on_frame` publishes to) and the C module, frames may also bypass
    Python altogether while the producer allows it (`sfu.router.fast_path`)."""
    kind: Kind = "video" if receiver.track.kind == "video" else "audio"
    _private(receiver, RTCRtpReceiver, "decoder_queue")  # fail now, not at the first packet
    original_receive, original_stop = receiver.receive, receiver.stop

    async def receive(parameters: Any) -> None:
        await original_receive(parameters)
        # aiortc calls receive() once ICE and DTLS are up. No await between starting its decoder
        # thread and ending it: no frame can reach the decoder.
        _private(receiver, RTCRtpReceiver, "decoder_queue").put(None)
        tap: Any = _native_tap(receiver, kind, on_frame) if native_rtp() is not None \
            else _FrameTap(receiver, kind, on_frame)
        setattr(receiver, _TAP_ATTRIBUTE, tap)
        _take_rtp_from_sockets(receiver.transport)
        if producer is not None and not isinstance(tap, _FrameTap):
            producer.attach_fast_path(tap)

    async def stop() -> None:
        tap = getattr(receiver, _TAP_ATTRIBUTE, None)
        if tap is not None and not isinstance(tap, _FrameTap):
            tap.route(None)
            demux = getattr(receiver.transport.transport._connection, _DEMUX_ATTRIBUTE, None)
            if demux is not None:
                demux.unroute(tap)
        await original_stop()

    receiver.receive = receive  # type: ignore[method-assign]
    receiver.stop = stop  # type: ignore[method-assign]


async def send_pli(receiver: RTCRtpReceiver) -> None:
    """Ask the publisher for a keyframe on every SSRC it is sending from."""
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)


# ---------------------------------------------------------------- sending: RTP from the delivering call

_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
_VP8_PAYLOAD_MAX = 1296  # payload bytes after the 4-byte descriptor, as aiortc's packetiser (1300 in all)
_HISTORY = 512  # packets kept for retransmission (a NACK names a sequence number)


def vp8_payloads(frame: bytes, picture_id: int) -> list[bytes]:
    """RFC 7741 packetisation: a 4-byte descriptor (X=1, I=1 with a 15-bit picture id; S=1 and
    PID=0 on the first packet of the frame) before each slice of the frame."""
    picture = (0x8000 | picture_id).to_bytes(2, "big")
    first, rest = b"\x90\x80" + picture, b"\x80\x80" + picture
    if len(frame) <= _VP8_PAYLOAD_MAX:
        return [first + frame]
    return [(first if pos == 0 else rest) + frame[pos:pos + _VP8_PAYLOAD_MAX]
            for pos in range(0, len(frame), _VP8_PAYLOAD_MAX)]


def _native_target(transport: Any, address: Any) -> tuple[int, bytes] | None:
    """(socket fd, sockaddr) to send on from C, if C is built and `transport` is a real socket."""
    native = native_rtp()
    sock = transport.get_extra_info("socket") if native is not None and hasattr(transport, "get_extra_info") else None
    if sock is None:
        return None
    try:
        return sock.fileno(), native.sockaddr(address[0], address[1])
    except (ValueError, OSError, IndexError, TypeError):
        return None


def _counted_by_native(attribute: str) -> Any:
    """One of the counters aiortc's sender keeps for its RTCP sender reports, read from the C
    Sender instead. Its setter only serves aiortc's own encode path, which never runs here."""
    return property(lambda self: int(getattr(self._openvisit_native, attribute)), lambda self, value: None)


class _NativeCountedSender(RTCRtpSender):
    """An RTCRtpSender whose RTCP sender-report counters (read by its RTCP task and getStats) are
    those of the C `Sender` that sends its packets, frames sent past Python included."""

    _openvisit_native: Any
    _RTCRtpSender__packet_count = _counted_by_native("packets_sent")
    _RTCRtpSender__octet_count = _counted_by_native("octets_sent")
    _RTCRtpSender__rtp_timestamp = _counted_by_native("last_timestamp")
    _RTCRtpSender__ntp_timestamp = _counted_by_native("last_ntp")


class DirectRtpSender:
    """Sends a consumer's encoded frames as RTP from the very call that delivered them: packetise
    (VP8 descriptor, or the Opus packet as it is), RTP header with the negotiated extensions
    (mid, abs-send-time), SRTP, UDP sendto. No queue, no task switch, no av.Packet.

    It works beside the RTCRtpSender it was made for: that sender negotiated the codec, SSRC,
    extension ids and keys, keeps sending RTCP sender reports (its counters are kept current
    here) and hands us NACKs, which are answered from a history of sent packets.

    With the C module the stream's state and the sending itself live in `output` (a
    `sfu._rtp_native.Sender`), the object a producer's fast path sends to directly; the Python
    code below is the reference and the fallback."""

    def __init__(self, sender: RTCRtpSender, kind: Kind) -> None:
        for name in ("packet_count", "octet_count", "rtp_timestamp", "ntp_timestamp"):
            _private(sender, RTCRtpSender, name)
        self.sender = sender
        self.kind = kind
        self._packets_sent = 0
        self._send_failures = 0  # datagrams the socket refused (buffer full): lost, as on a congested router
        self.retransmissions = 0
        self._payload_type = 0
        self._dtls: RTCDtlsTransport | None = None  # known once aiortc starts the sender (ICE and DTLS up)
        self._srtp: SrtpCalls | None = None
        self._ice_connection: Any = None
        self._ext_head = b""  # up to and including the abs-send-time element's id byte
        self._ext_tail = b""  # the rest of the extension block (mid, padding)
        self._has_abs_send_time = False
        self._sequence = random.getrandbits(16)
        self._timestamp_origin = random.getrandbits(32)
        self._last_timestamp: int | None = None  # the last RTP timestamp sent, and when its frame came
        self._last_frame_at = 0.0
        self._rebase = False
        self._picture_id = random.getrandbits(15)
        self._history: list[bytes | None] = [None] * _HISTORY
        self._history_seq = [-1] * _HISTORY
        # (nominated pair, its socket transport, address, (socket fd, sockaddr) for sfu._rtp_native)
        self._path: tuple[Any, Any, Any, tuple[int, bytes] | None] | None = None
        native = native_rtp()
        self.output: Any = None if native is None else native.Sender(
            kind == "video", self._sequence, self._timestamp_origin, self._picture_id)
        self._output_path: tuple[Any, Any] | None = None  # (pair, SRTP session) the output was given
        if self.output is not None:
            sender.__class__ = _NativeCountedSender
            sender._openvisit_native = self.output  # type: ignore[attr-defined]
        original_send = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._configure(parameters)
            await original_send(parameters)

        sender.send = send  # type: ignore[method-assign]
        sender._retransmit = self.retransmit  # type: ignore[method-assign]

    @property
    def packets_sent(self) -> int:
        return int(self.output.packets_sent) if self.output is not None else self._packets_sent

    @property
    def send_failures(self) -> int:
        return int(self.output.send_failures) if self.output is not None else self._send_failures

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        mid = (parameters.muxId or "").encode()
        mid_element = bytes([ids[_MID] << 4 | (len(mid) - 1)]) + mid if _MID in ids and 0 < len(mid) <= 16 else b""
        self._has_abs_send_time = _ABS_SEND_TIME in ids
        size = (4 if self._has_abs_send_time else 0) + len(mid_element)  # abs-send-time: id byte + 3 bytes
        if size:
            padding = -size % 4
            block_header = b"\xbe\xde" + ((size + padding) // 4).to_bytes(2, "big")  # RFC 8285 one-byte form
            tail = mid_element + b"\0" * padding
            if self._has_abs_send_time:  # send_frame puts the 3 time bytes between head and tail
                self._ext_head, self._ext_tail = block_header + bytes([ids[_ABS_SEND_TIME] << 4 | 2]), tail
            else:
                self._ext_tail = block_header + tail
        payload_type = parameters.codecs[0].payloadType
        if payload_type is None:
            raise AdapterContractError("the negotiated codec has no payload type")
        self._payload_type = payload_type
        self._dtls = self.sender.transport  # final: bundling has picked the transport by now
        self._ice_connection = self._dtls.transport._connection
        if self.output is not None:
            self.output.configure(payload_type, self.sender._ssrc, self._ext_head, self._ext_tail,
                                  self._has_abs_send_time)

    def _path_now(self) -> tuple[Any, Any, Any, tuple[int, bytes] | None] | None:
        """The DTLS transport, socket, remote address (and its native form) media goes out on, or
        None while the connection cannot carry media. Looked up per frame: ICE may switch the
        nominated pair."""
        dtls = self._dtls
        if dtls is None or dtls._state is not DtlsState.CONNECTED:
            return None
        pair = self._ice_connection._nominated.get(1)
        if pair is None:
            return None
        path = self._path
        if path is None or path[0] is not pair:
            transport = pair.protocol.transport
            path = self._path = (pair, transport, pair.remote_addr, _native_target(transport, pair.remote_addr))
        return dtls, path[1], path[2], path[3]

    def _srtp_now(self, dtls: RTCDtlsTransport) -> SrtpCalls:
        srtp = self._srtp
        if srtp is None or srtp.session is not dtls._tx_srtp:
            srtp = self._srtp = SrtpCalls(dtls._tx_srtp)
        return srtp

    def send_frame(self, frame: EncodedFrame) -> bool:
        """Send one frame now. False if the connection cannot carry media yet (or any more)."""
        path = self._path_now()
        if path is None:
            return False
        dtls, transport, address, target = path
        srtp = self._srtp_now(dtls)
        output = self.output
        if output is not None:
            return self._send_from_c(output, frame, dtls, srtp, transport, address, target)
        if self._rebase:
            self._continue_timestamps(frame)
        payload_type = self._payload_type
        timestamp = (self._timestamp_origin + frame.timestamp) & 0xFFFFFFFF
        ntp = aiortc.clock.current_ntp_time()
        if self._has_abs_send_time:
            extensions = self._ext_head + ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big") + self._ext_tail
        else:
            extensions = self._ext_tail
        first_byte = 0x90 if extensions else 0x80
        ssrc = self.sender._ssrc
        sequence = self._sequence
        if self.kind == "audio":  # one packet, marker set (as aiortc does), no retransmission history
            transport.sendto(srtp.protect(_RTP_HEADER.pack(first_byte, payload_type | 0x80, sequence, timestamp,
                                                           ssrc) + extensions + frame.data), address)
            sent, octets, sequence = 1, len(frame.data), (sequence + 1) & 0xFFFF
        else:
            payloads = vp8_payloads(frame.data, self._picture_id)
            self._picture_id = (self._picture_id + 1) & 0x7FFF
            last = len(payloads) - 1
            octets = 0
            history, history_seq = self._history, self._history_seq
            for index, payload in enumerate(payloads):
                data = srtp.protect(_RTP_HEADER.pack(first_byte, payload_type | (0x80 if index == last else 0),
                                                     sequence, timestamp, ssrc) + extensions + payload)
                transport.sendto(data, address)
                slot = sequence % _HISTORY
                history[slot], history_seq[slot] = data, sequence
                sequence = (sequence + 1) & 0xFFFF
                octets += len(payload)
            sent = last + 1
        self._sequence = sequence
        self._last_timestamp, self._last_frame_at = timestamp, frame.received_at
        self._packets_sent += sent
        sender: Any = self.sender  # the counters its RTCP sender reports are made of
        sender._RTCRtpSender__ntp_timestamp = ntp
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__packet_count += sent
        sender._RTCRtpSender__octet_count += octets
        return True

    def _send_from_c(self, output: Any, frame: EncodedFrame, dtls: RTCDtlsTransport, srtp: SrtpCalls, transport: Any,
                     address: Any, target: tuple[int, bytes] | None) -> bool:
        """The same packets, made (and, on a real socket, sent) by the C Sender; it is told first
        of a new ICE pair or SRTP session, and then checks them itself when sending past Python."""
        pair = self._path[0] if self._path is not None else None
        if self._output_path != (pair, srtp.session):
            self._output_path = (pair, srtp.session)
            fd, sockaddr = target if target is not None else (-1, b"")
            output.set_path(srtp.address, srtp.session, fd, sockaddr, dtls, DtlsState.CONNECTED,
                            self._ice_connection._nominated, pair)
        datagrams = output.send(frame.data, frame.timestamp, frame.clock_rate, frame.received_at)
        if datagrams is not None:  # not a real socket (a test's transport): Python sends them
            for datagram in datagrams:
                transport.sendto(datagram, address)
        return True

    def source_changed(self) -> None:
        """Another producer feeds this sender now (a party rejoined): its timestamps start from
        zero, but the stream the receiver sees must go on, as if the party had never left."""
        self._rebase = True
        if self.output is not None:
            self.output.source_changed()

    def _continue_timestamps(self, frame: EncodedFrame) -> None:
        self._rebase = False
        if self._last_timestamp is None:
            return
        elapsed = max(1, int((frame.received_at - self._last_frame_at) * frame.clock_rate))
        self._timestamp_origin = (self._last_timestamp + elapsed - frame.timestamp) & 0xFFFFFFFF

    async def retransmit(self, sequence_number: int) -> None:
        """A receiver's NACK: the packet again, as it was sent (same SRTP index, so no re-protect)."""
        if self.output is not None:
            data = self.output.sent_packet(sequence_number)
        else:
            slot = sequence_number % _HISTORY
            data = self._history[slot] if self._history_seq[slot] == sequence_number else None
        if data is None:
            return
        path = self._path_now()
        if path is not None:
            path[1].sendto(data, path[2])
            self.retransmissions += 1


class ForwardingTrack(MediaStreamTrack):
    """A sender's track for the whole life of a peer connection: it forwards the frames of
    whichever consumer is attached (none yet, the other party's, a rejoined party's), so the
    sender never stops and no renegotiation is needed when the other side comes and goes (S5).

    Frames do not pass through `recv()`: the attached consumer pushes each one to the
    `DirectRtpSender` bound by `forward_through`, from the callback that received it. `recv()`
    only keeps aiortc's sender task waiting."""

    def __init__(self, kind: Kind) -> None:
        super().__init__()
        self.kind = kind
        self._consumer: Consumer | None = None
        self._direct: DirectRtpSender | None = None
        self._stopped = asyncio.Event()
        self._on_frame_sent: OnFrame | None = None

    @property
    def consumer(self) -> Consumer | None:
        return self._consumer

    @property
    def packets_retransmitted(self) -> int:
        return self._direct.retransmissions if self._direct is not None else 0

    @property
    def datagrams_refused(self) -> int:
        """Datagrams the socket would not take (send buffer full): lost before the network."""
        return self._direct.send_failures if self._direct is not None else 0

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
        if consumer is not None and self._direct is not None:
            self._direct.source_changed()
        self._wire()

    def _bind(self, direct: DirectRtpSender) -> None:
        self._direct = direct
        self._wire()

    def _wire(self) -> None:
        """The consumer's sink: the direct sender itself, one call per frame (and its C Sender as
        the fast path's output), unless someone wants to hear of each frame sent."""
        if self._consumer is not None:
            direct = self._direct
            if direct is not None and self._on_frame_sent is None:
                self._consumer.connect(direct.send_frame, direct.output)
            else:
                self._consumer.connect(self._send, None)

    def _send(self, frame: EncodedFrame) -> bool:
        direct = self._direct
        if direct is None or not direct.send_frame(frame):
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


def forward_through(sender: RTCRtpSender, track: ForwardingTrack) -> DirectRtpSender:
    """Make `sender` carry `track`'s forwarded frames: sent directly (`DirectRtpSender`), the
    receiver's keyframe requests and bandwidth estimates routed back to the producer."""
    direct = DirectRtpSender(sender, "video" if track.kind == "video" else "audio")
    track._bind(direct)
    _route_keyframe_requests(sender, track)
    _relay_bandwidth_estimates(sender, track)
    return direct


def _route_keyframe_requests(sender: RTCRtpSender, track: ForwardingTrack) -> None:
    """A receiver's PLI reaches `RTCRtpSender._send_keyframe`, which would only tell an encoder
    we never use: ask the producer instead."""
    _private(sender, RTCRtpSender, "force_keyframe")
    sender._send_keyframe = track.request_keyframe  # type: ignore[method-assign]


def _relay_bandwidth_estimates(sender: RTCRtpSender, track: ForwardingTrack) -> None:
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


_original_get_local_candidates = aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates


def announce_host_address(address: str) -> Callable[[], None]:
    """Announce host candidates with `address` instead of the bound one (process-wide), for an
    SFU behind a 1:1 NAT; only what the SDP says changes, aioice's sockets and pairs do not.
    Returns an undo function."""
    ipaddress.ip_address(address)  # a name would be a broken candidate: refuse it here

    def getLocalCandidates(self: aiortc.rtcicetransport.RTCIceGatherer) -> list[RTCIceCandidate]:
        return [dataclasses.replace(c, ip=address) if c.type == "host" else c
                for c in _original_get_local_candidates(self)]

    aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates = getLocalCandidates  # type: ignore[method-assign]

    def undo() -> None:
        aiortc.rtcicetransport.RTCIceGatherer.getLocalCandidates = (  # type: ignore[method-assign]
            _original_get_local_candidates)

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
