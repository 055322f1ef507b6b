"""Pre-encoded media for load generators, benchmarks and tests: real VP8 and Opus made once with
PyAV, then replayed by aiortc tracks without encoding, so load generators stay cheap."""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av
from aiortc import MediaStreamTrack

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000


def encode_vp8(frames: int = 90, width: int = 640, height: int = 480, fps: int = 30, gop: int = 30) -> list[bytes]:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, fps)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = 500_000
    ctx.gop_size = gop
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "end-usage": "cbr"}
    out: list[bytes] = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            # A gradient sliding one pixel a frame: real motion at a camera-like ~500 kbps.
            row = bytes((k + i) % 256 for k in range(width if n == 0 else width // 2))
            plane.update((row * (plane.buffer_size // len(row) + 1))[:plane.buffer_size])
        frame.pts = i
        out.extend(bytes(p) for p in ctx.encode(frame))
    out.extend(bytes(p) for p in ctx.encode(None))
    return out


def encode_opus(packets: int = 150) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = AUDIO_CLOCK, "stereo", "s16"
    ctx.bit_rate = 32000
    out: list[bytes] = []
    for i in range(packets):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
        frame.planes[0].update(bytes(((i * 7 + k) % 64) for k in range(960 * 4)))
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = i * 960
        out.extend(bytes(p) for p in ctx.encode(frame))
    return out


class ReplayTrack(MediaStreamTrack):
    """Sends pre-encoded frames in real time as av.Packets (aiortc packetises, never encodes)."""

    def __init__(self, kind: str, payloads: list[bytes], *, loop_forever: bool = True) -> None:
        super().__init__()
        self.kind = kind
        self.payloads = payloads
        self.loop_forever = loop_forever
        self.sent: list[bytes] = []
        self.sent_at: dict[bytes, float] = {}  # payload -> last monotonic send time (latency probes)
        self._i = 0
        self._start: float | None = None
        self._interval = 1 / 30 if kind == "video" else 0.02
        self._step = VIDEO_CLOCK // 30 if kind == "video" else 960
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._i * self._interval
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if self._i >= len(self.payloads) and not self.loop_forever:
            self.stop()
            raise asyncio.CancelledError
        data = self.payloads[self._i % len(self.payloads)]
        packet = av.Packet(data)
        packet.pts = self._i * self._step
        packet.time_base = fractions.Fraction(1, self._clock)
        self._i += 1
        self.sent.append(data)
        self.sent_at[data] = time.monotonic()
        return packet


class SyntheticCamera(MediaStreamTrack):
    """A live 640x480 camera for publishers that must really encode (aiortc encodes its frames, so
    it answers keyframe requests as a browser does): a gradient that moves one pixel a frame."""

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._i = 0
        self._start: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._i / self.fps
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for n, plane in enumerate(frame.planes):
            row = bytes((k + self._i) % 256 for k in range(self.width if n == 0 else self.width // 2))
            plane.update((row * (plane.buffer_size // len(row) + 1))[:plane.buffer_size])
        frame.pts = self._i * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._i += 1
        return frame


class ReplayPublisher:
    """What `ReplayTrack` does, for load generators that must stay cheap: pre-encoded frames sent in
    real time through the SFU's own `FrameSender` (RTP packetised, SRTP, sendto in one call)
    instead of aiortc's per-packet sender task. Call `publish(pc, kind)` before negotiating and
    `start()` once it is done; `sent_at` maps each payload to its last send time."""

    def __init__(self, kind: str, payloads: list[bytes]) -> None:
        self.kind = kind
        self.payloads = payloads
        self.sent_at: dict[bytes, float] = {}
        self._direct: Any = None
        self._task: asyncio.Task[None] | None = None

    def publish(self, pc: Any) -> None:
        from sfu.aiortc_adapter import ForwardingTrack, forward_through

        track = ForwardingTrack("video" if self.kind == "video" else "audio")
        self._direct = forward_through(pc.addTrack(track), track)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        from sfu.router.frames import EncodedFrame, vp8_is_keyframe

        video = self.kind == "video"
        interval, step = (1 / 30, VIDEO_CLOCK // 30) if video else (0.02, 960)
        clock = VIDEO_CLOCK if video else AUDIO_CLOCK
        start: float | None = None  # the first frame (a keyframe) goes out once the connection is up
        i = 0
        while True:
            if start is not None:
                await asyncio.sleep(max(0.0, start + i * interval - time.monotonic()))
            data = self.payloads[i % len(self.payloads)]
            now = time.monotonic()
            frame = EncodedFrame(kind="video" if video else "audio", data=data, timestamp=i * step, clock_rate=clock,
                                 keyframe=vp8_is_keyframe(data) if video else True, received_at=now)
            if self._direct.send_frame(frame):
                self.sent_at[data] = now
                if start is None:
                    start = now
                i += 1
            elif start is None:
                await asyncio.sleep(0.01)
            else:
                i += 1

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
