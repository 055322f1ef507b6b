"""VisitRecorder: records a social visit (R1) as one WebM file per party, attached to the visit's
router as `recorder` consumers of every producer, including a late or rejoining party's.

A privileged visit's router refuses it before anything is set up (P1): no consumer, no file.
At close each file is committed atomically and hashed, and a manifest (visit, parties, times,
files with sizes and SHA-256 digests) is returned for the control plane to sign and keep (R2).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sfu.recording.party_writer import PartyWriter, WriterResult
from sfu.recording.storage import RecordingStorage, sha256_file
from sfu.recording.timeline import Timeline
from sfu.router import ConsumerClosedError, Producer, Router

Side = Literal["visitor", "resident"]
MANIFEST_KIND = "openvisit.recording-manifest"


class VisitRecorder:
    def __init__(self, visit_id: str, router: Router, storage: RecordingStorage, *,
                 now: Callable[[], datetime]) -> None:
        router.admit(f"recorder-{visit_id}", "recorder")  # P1: refused (and reported) on a privileged visit
        self.visit_id = visit_id
        self.router = router
        self.storage = storage
        self.now = now
        self.started_at = now()
        self.timeline = Timeline(time.monotonic())
        self._writers: dict[Side, PartyWriter] = {}
        self._participants: dict[Side, list[str]] = {}
        self._pumps: set[asyncio.Task[None]] = set()
        self.closed = False

    def record(self, side: Side, producer: Producer) -> None:
        """Record this party's track from now on (called for every producer, late ones too)."""
        if self.closed:
            return
        consumer = self.router.consume(producer, f"recorder-{producer.id}", "recorder")
        writer = self._writers.get(side)
        if writer is None:
            writer = self._writers[side] = PartyWriter(self.storage.staging_path(self.visit_id, f"{side}.webm"))
        ids = self._participants.setdefault(side, [])
        if producer.participant_id not in ids:
            ids.append(producer.participant_id)
        stream = f"{side}-{producer.kind}"

        async def pump() -> None:
            with contextlib.suppress(ConsumerClosedError):
                while True:
                    frame = await consumer.next_frame()
                    pts = self.timeline.pts_ms(producer.id, stream, frame.timestamp, frame.clock_rate,
                                               frame.received_at)
                    writer.put(frame.kind, frame.data, pts, frame.keyframe)

        task = asyncio.get_running_loop().create_task(pump())
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)

    async def close(self) -> dict[str, Any]:
        """Finish every file, commit and hash it; returns the (unsigned) manifest."""
        self.closed = True
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ended_at = self.now()
        files = []
        for side, writer in sorted(self._writers.items()):
            writer.flush()
            result: WriterResult = await asyncio.to_thread(writer.close)
            if not result.written:
                await asyncio.to_thread(result.path.unlink, missing_ok=True)
                continue
            name = f"{side}.webm"
            path = await asyncio.to_thread(self.storage.commit, self.visit_id, name)
            digest = await asyncio.to_thread(sha256_file, path)
            files.append({"name": name, "party": side, "participant_ids": self._participants.get(side, []),
                          "media_type": "video/webm", "codecs": ["vp8", "opus"], "size": path.stat().st_size,
                          "sha256": digest, "first_media_ms": result.first_ms, "last_media_ms": result.last_ms,
                          "video_packets": result.video_packets, "audio_packets": result.audio_packets,
                          "frames_lost_to_disk": result.dropped})
        return {"kind": MANIFEST_KIND, "visit_id": self.visit_id, "started_at": self.started_at.isoformat(),
                "ended_at": ended_at.isoformat(), "timeline": "milliseconds since started_at, shared by every file",
                "parties": {side: ids for side, ids in sorted(self._participants.items())}, "files": files}
