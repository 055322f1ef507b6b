"""VisitRecorder: records a social visit (R1) as one WebM file per party, attached to the visit's
router as `recorder` consumers of every producer, including a late or rejoining party's.

A privileged visit's router refuses it before anything is set up (P1): no consumer, no file.

Each recorder writes one *segment* of the visit's recording: its files take the next free
segment names (`visitor.webm`, then `visitor-002.webm`, ...; storage.reserve_segment), so a
recorder started after a crash or on another room never touches an earlier segment (R1). At
close each file is committed atomically and hashed, and a manifest (visit, segment, parties,
times, files with sizes and SHA-256 digests) is returned for the control plane to sign and merge
with the visit's other segments (R2).

A write error (disk full) stops the whole recorder at once: its consumers detach (the call goes
on), `on_failure` is called once with the reason, and at close what was written is kept,
finalised (`recovery.finalise`) and listed with `truncated: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from sfu.recording.party_writer import PartyWriter, WriterResult
from sfu.recording.recovery import MANIFEST_KIND, Finalised, file_entry, finalise, new_segment_id
from sfu.recording.storage import RecordingStorage, Reservation
from sfu.recording.timeline import Timeline
from sfu.router import Consumer, ConsumerClosedError, Producer, Router

log = logging.getLogger(__name__)
Side = Literal["visitor", "resident"]
__all__ = ["MANIFEST_KIND", "VisitRecorder"]


class VisitRecorder:
    def __init__(self, visit_id: str, router: Router, storage: RecordingStorage, *,
                 now: Callable[[], datetime], on_failure: Callable[[str], None] | None = None) -> None:
        router.admit(f"recorder-{visit_id}", "recorder")  # P1: refused (and reported) on a privileged visit
        self.visit_id = visit_id
        self.router = router
        self.storage = storage
        self.now = now
        self.started_at = now()
        self.segment_id = new_segment_id()
        self.timeline = Timeline(time.monotonic())
        self._writers: dict[Side, PartyWriter] = {}
        self._reservations: dict[Side, Reservation] = {}
        self._participants: dict[Side, list[str]] = {}
        self._pumps: set[asyncio.Task[None]] = set()
        self._consumers: list[Consumer] = []
        self._on_failure = on_failure
        self.failure: str | None = None  # the first write error: the recorder stopped there
        self.closed = False

    def record(self, side: Side, producer: Producer) -> None:
        """Record this party's track from now on (called for every producer, late ones too)."""
        if self.closed or self.failure is not None:
            return
        writer = self._writers.get(side)
        if writer is None:
            reservation = self.storage.reserve_segment(self.visit_id, side)  # R1: a new name, never an old one
            self._reservations[side] = reservation
            writer = self._writers[side] = PartyWriter(reservation.path, metadata={
                "OPENVISIT_VISIT": self.visit_id, "OPENVISIT_PARTY": side, "OPENVISIT_SEGMENT": self.segment_id,
                "OPENVISIT_STARTED_AT": self.started_at.isoformat(),
                "OPENVISIT_PARTICIPANTS": producer.participant_id}, on_failure=self._writer_failed)
        consumer = self.router.consume(producer, f"recorder-{producer.id}", "recorder")
        self._consumers.append(consumer)
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

    def _writer_failed(self, reason: str) -> None:
        """On the loop, from a writer's thread: stop recording (the call goes on), report once."""
        if self.failure is not None or self.closed:
            return
        self.failure = reason
        log.error("recording of %s stopped: %s", self.visit_id, reason)
        self._detach()
        if self._on_failure is not None:
            self._on_failure(reason)

    def _detach(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        for consumer in self._consumers:
            with contextlib.suppress(Exception):
                consumer.close()
        self._consumers.clear()

    async def close(self) -> dict[str, Any]:
        """Finish every file, commit and hash it; returns the (unsigned) manifest of this segment.
        Bounded in time: a writer that died returns at once, a stalled disk after its timeout."""
        self.closed = True
        pumps = list(self._pumps)
        self._detach()
        for task in pumps:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ended_at = self.now()
        files = []
        problems = [self.failure] if self.failure else []
        sides = sorted(self._writers)
        for side in sides:
            self._writers[side].flush()
        results: list[WriterResult] = await asyncio.gather(  # in parallel: a stalled disk costs one timeout
            *(asyncio.to_thread(self._writers[side].close) for side in sides))
        for side, result in zip(sides, results, strict=True):
            reservation = self._reservations[side]
            if result.error and self.failure is None:  # failed while finishing (the trailer met a full disk)
                self.failure = result.error
                problems.append(result.error)
                if self._on_failure is not None:
                    self._on_failure(result.error)
            try:
                entry = await asyncio.to_thread(self._finish_file, side, reservation, result)
            except OSError as exc:
                log.exception("finishing %s of %s failed; left for recovery", reservation.name, self.visit_id)
                problems.append(f"{reservation.name}: {exc}")
                continue
            finally:
                if result.finished:
                    reservation.release()  # a still-busy writer keeps its lock: not an orphan yet
            if entry is not None:
                files.append(entry)
                if entry.get("truncated") and not self.failure and result.error:
                    problems.append(f"{entry['name']}: {result.error}")
        manifest: dict[str, Any] = {
            "kind": MANIFEST_KIND, "visit_id": self.visit_id, "segment_id": self.segment_id,
            "started_at": self.started_at.isoformat(), "ended_at": ended_at.isoformat(),
            "timeline": "milliseconds since started_at, shared by every file",
            "parties": {side: ids for side, ids in sorted(self._participants.items())}, "files": files,
            "complete": not problems, "truncated": any(f.get("truncated") for f in files)}
        if problems:
            manifest["problems"] = problems
        return manifest

    def _finish_file(self, side: Side, reservation: Reservation, result: WriterResult) -> dict[str, Any] | None:
        """Blocking: commit (or finalise, after a failure) one party's file and describe it."""
        ids = self._participants.get(side, [])
        if not result.finished:
            return None  # the thread still writes it: recovered at the next start (its lock then released)
        if result.written:
            path = self.storage.commit(self.visit_id, reservation.name)
            done = Finalised(path, remuxed=False, damaged=False, video_packets=result.video_packets,
                             audio_packets=result.audio_packets, first_ms=result.first_ms, last_ms=result.last_ms)
            return file_entry(reservation.name, side, ids, done, truncated=False, recovered=False,
                              dropped=result.dropped)
        if not result.truncated:  # nothing was ever written: the empty reservation goes
            reservation.path.unlink(missing_ok=True)
            return None
        done = finalise(reservation.path, self.storage.path(self.visit_id, reservation.name))  # R1: keep it
        return file_entry(done.path.name, side, ids, done, truncated=True, recovered=False, dropped=result.dropped)
