"""PartyWriter: one party's audio and video, muxed into a WebM file (VP8 + Opus) with PyAV,
without decoding or encoding, on a thread of its own so disk I/O never blocks the event loop.

The container opens at the first video keyframe (its size is read from the VP8 header) or, for a
party whose camera never sends, once a couple of seconds of audio are waiting.

Crash safety (R1): the muxer closes a cluster every `CLUSTER_TIME_LIMIT_MS` and flushes its I/O
buffer to the OS after every packet (`flush_packets`), so a killed process loses at most about
one cluster plus one batch (~1.1 s; measured by tests/sfu/test_recording_crash.py). The file's
header carries the visit, party, segment and recording origin (`OPENVISIT_*` tags), which is
what recovery reads back from an orphan.

Failure containment: a write error (disk full, I/O error) ends the thread, is reported once
through `on_failure` (on the event loop), and every later frame is dropped and counted; `close`
never blocks longer than its timeout, whether the thread died or the disk stalled.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

log = logging.getLogger(__name__)
MS = Fraction(1, 1000)
AUDIO_BEFORE_OPEN = 100  # packets (2 s of Opus) to hold while waiting for a first video keyframe
BATCH_SECONDS = 0.1  # frames go to the muxing thread in batches: one thread wake-up per batch, not per frame
CLUSTER_TIME_LIMIT_MS = 1000  # a Matroska cluster is buffered in memory until closed: this bounds a crash's loss
CLUSTER_SIZE_LIMIT = 256 * 1024
CLOSE_TIMEOUT = 10.0  # seconds `close` waits for the thread to finish the file
MUXER_OPTIONS = {
    "cluster_time_limit": str(CLUSTER_TIME_LIMIT_MS),
    "cluster_size_limit": str(CLUSTER_SIZE_LIMIT),
    "flush_packets": "1",  # hand every written cluster to the OS at once (survives a process crash)
    "max_interleave_delta": "1000000",  # µs: never hold one stream's packets > 1 s waiting for the other's
}
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
    finished: bool = True  # False: the thread was still writing when `close` gave up (disk stalled)

    @property
    def written(self) -> bool:
        return self.error is None and (self.video_packets + self.audio_packets) > 0

    @property
    def truncated(self) -> bool:
        """Something was written but the file did not end normally (write error or stall)."""
        return (self.error is not None or not self.finished) and (self.video_packets + self.audio_packets) > 0


class PartyWriter:
    def __init__(self, path: Path, *, max_queue: int = 200, metadata: dict[str, str] | None = None,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.metadata = metadata or {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)  # of batches
        self._batch: list[tuple[str, bytes, int, bool]] = []
        self._result = WriterResult(path, 0, 0, 0, None, None)
        self._stop = threading.Event()
        self._failed = threading.Event()
        self._on_failure = on_failure
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.Thread(target=self._run, name=f"recorder-{path.name}", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def put(self, kind: Literal["audio", "video"], data: bytes, pts_ms: int, keyframe: bool) -> None:
        """From the event loop; never blocks. Frames are handed over in batches (`flush`)."""
        if self._failed.is_set() or self._stop.is_set():
            self._result.dropped += 1
            return
        if not self._batch:
            asyncio.get_running_loop().call_later(BATCH_SECONDS, self.flush)
        self._batch.append((kind, data, pts_ms, keyframe))

    def flush(self) -> None:
        """Hand the batch to the muxing thread (a full queue means the disk stalled: it is lost)."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        if self._failed.is_set():
            self._result.dropped += len(batch)
            return
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            self._result.dropped += len(batch)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> WriterResult:
        """Blocking but bounded: finish the file (call `flush` on the loop first, then this with
        asyncio.to_thread). Returns at once when the thread already died; after `timeout` when the
        disk stalls (the result says `finished=False`; the daemon thread ends when its write does)."""
        self._stop.set()
        try:
            self._queue.put_nowait(_STOP)  # wakes a waiting thread at once; a full queue is seen by the timeout
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._result.finished = False
            self._result.error = self._result.error or f"the disk did not take the recording within {timeout:.0f} s"
            log.error("recording %s: writer still busy after %.0f s; left for recovery", self.path, timeout)
        return self._result

    def _report_failure(self, message: str) -> None:
        self._failed.set()
        if self._on_failure is not None and self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._on_failure, message)
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _run(self) -> None:
        result = self._result
        container: Any = None
        streams: dict[str, Any] = {}
        pending: list[tuple[str, bytes, int, bool]] = []

        def open_container(size: tuple[int, int]) -> None:
            nonlocal container
            container = av.open(str(self.path), "w", format="webm", options=MUXER_OPTIONS)
            container.metadata.update(self.metadata)  # written in the header: recovery reads it back
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
            container.mux(packet)
            if kind == "video":
                result.video_packets += 1
            else:
                result.audio_packets += 1
            if result.first_ms is None or pts < result.first_ms:
                result.first_ms = pts
            result.last_ms = pts if result.last_ms is None else max(result.last_ms, pts)

        def take(item: tuple[str, bytes, int, bool]) -> None:
            kind, data, pts, keyframe = item
            if container is None:
                size = vp8_keyframe_size(data) if kind == "video" and keyframe else None
                if size is None:
                    if kind == "video":
                        return  # no video before a keyframe
                    pending.append(item)
                    if len(pending) >= AUDIO_BEFORE_OPEN:  # a party without video: audio only
                        open_container((640, 480))
                        for held in pending:
                            mux(*held)
                        pending.clear()
                    return
                open_container(size)
                for held in pending:
                    mux(*held)
                pending.clear()
            mux(kind, data, pts, keyframe)

        try:
            while True:
                try:
                    batch = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if batch is _STOP:  # write what was queued behind the marker, then finish
                    while True:
                        try:
                            rest = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        for item in rest if rest is not _STOP else ():
                            take(item)
                    break
                for item in batch:
                    take(item)
            if container is None and pending:
                open_container((640, 480))
                for held in pending:
                    mux(*held)
        except Exception as exc:  # a disk or muxer failure must not take the SFU down, nor pass silently
            log.exception("recording %s failed", self.path)
            result.error = str(exc) or type(exc).__name__
        finally:
            if container is not None:
                started = time.monotonic()
                try:
                    container.close()
                except Exception as exc:
                    result.error = result.error or str(exc) or type(exc).__name__
                    log.error("recording %s: closing the container failed after %.1f s: %s", self.path,
                              time.monotonic() - started, exc)
            if result.error is not None:
                self._report_failure(result.error)
