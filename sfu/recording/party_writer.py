"""PartyWriter: one party's audio and video, muxed into a WebM file (VP8 + Opus) with PyAV,
without decoding or encoding, on a thread of its own so disk I/O never blocks the event loop.

The container opens at the first video keyframe (its size is read from the VP8 header) or, for a
party whose camera never sends, once a couple of seconds of audio are waiting.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

log = logging.getLogger(__name__)
MS = Fraction(1, 1000)
AUDIO_BEFORE_OPEN = 100  # packets (2 s of Opus) to hold while waiting for a first video keyframe
BATCH_SECONDS = 0.1  # frames go to the muxing thread in batches: one thread wake-up per batch, not per frame
_STOP = object()


def vp8_keyframe_size(data: bytes) -> tuple[int, int] | None:
    """RFC 6386 §9.1: a key frame's tag is followed by the start code 9d 01 2a, width, height."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF


@dataclass
class WriterResult:
    path: Path
    video_packets: int
    audio_packets: int
    dropped: int
    first_ms: int | None
    last_ms: int | None
    error: str | None = None

    @property
    def written(self) -> bool:
        return self.error is None and (self.video_packets + self.audio_packets) > 0


class PartyWriter:
    def __init__(self, path: Path, *, max_queue: int = 200) -> None:
        self.path = path
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)  # of batches
        self._batch: list[tuple[str, bytes, int, bool]] = []
        self._result = WriterResult(path, 0, 0, 0, None, None)
        self._thread = threading.Thread(target=self._run, name=f"recorder-{path.name}", daemon=True)
        self._thread.start()

    def put(self, kind: Literal["audio", "video"], data: bytes, pts_ms: int, keyframe: bool) -> None:
        """From the event loop; never blocks. Frames are handed over in batches (`flush`)."""
        if not self._batch:
            asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)
        self._batch.append((kind, data, pts_ms, keyframe))

    def flush(self) -> None:
        """Hand the batch to the muxing thread (a full queue means the disk stalled: it is lost)."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._result.dropped += len(batch)

    def close(self) -> WriterResult:
        """Blocking: finish the file (call `flush` on the loop first, then this with asyncio.to_thread)."""
        self._queue.put(_STOP)
        self._thread.join()
        return self._result

    def _run(self) -> None:
        result = self._result
        container: Any = None
        streams: dict[str, Any] = {}
        pending: list[tuple[str, bytes, int, bool]] = []

        def open_container(size: tuple[int, int]) -> None:
            nonlocal container
            container = av.open(str(self.path), "w", format="webm")
            video = container.add_stream("libvpx", rate=30)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.time_base = MS
            audio = container.add_stream("libopus", rate=48000)  # a codec context: WebM needs OpusHead
            audio.layout = "stereo"
            audio.time_base = MS
            container.start_encoding()
            streams.update(video=video, audio=audio)

        def mux(kind: str, data: bytes, pts: int, keyframe: bool) -> None:
            packet = av.Packet(data)
            packet.pts = packet.dts = pts
            packet.time_base = MS
            packet.stream = streams[kind]
            if kind == "video":
                packet.is_keyframe = keyframe
                result.video_packets += 1
            else:
                result.audio_packets += 1
            if result.first_ms is None or pts < result.first_ms:
                result.first_ms = pts
            result.last_ms = pts if result.last_ms is None else max(result.last_ms, pts)
            container.mux(packet)

        try:
            while True:
                batch = self._queue.get()
                if batch is _STOP:
                    break
                for item in batch:
                    kind, data, pts, keyframe = item
                    if container is None:
                        size = vp8_keyframe_size(data) if kind == "video" and keyframe else None
                        if size is None:
                            if kind == "video":
                                continue  # no video before a keyframe
                            pending.append(item)
                            if len(pending) >= AUDIO_BEFORE_OPEN:  # a party without video: audio only
                                open_container((640, 480))
                                for held in pending:
                                    mux(*held)
                                pending.clear()
                            continue
                        open_container(size)
                        for held in pending:
                            mux(*held)
                        pending.clear()
                    mux(kind, data, pts, keyframe)
            if container is None and pending:
                open_container((640, 480))
                for held in pending:
                    mux(*held)
        except Exception as exc:  # a disk or muxer failure must not take the SFU down
            log.exception("recording %s failed", self.path)
            result.error = str(exc)
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:
                    result.error = result.error or str(exc)
