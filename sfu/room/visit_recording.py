"""VisitRecording: a room's recording (R1, R2), never for a privileged visit (P1, P2).

A social visit is recorded from the moment its media opens (S1), each party's tracks as they are
published. Storage failures are loud but never stop the call: a below-threshold disk refuses the
recording, a write error or a track that cannot start is counted (a metric) and reported as a
`recording_failed` event (audited; staff see the recording as incomplete). At the end the segment
is closed and its manifest reported, even after a write error (what was written is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sfu.events import VisitEvent, VisitEventSink
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import RecordingStorage
from sfu.room.participant_connection import Side
from sfu.router import Producer, Router

log = logging.getLogger(__name__)


class VisitRecording:
    def __init__(self, visit_id: str, router: Router, storage: RecordingStorage | None, *,
                 now: Callable[[], datetime], events: VisitEventSink, event: Callable[..., VisitEvent]) -> None:
        self.visit_id = visit_id
        self.router = router
        self.storage = storage
        self.now = now
        self.events = events
        self._event = event  # the room's events: its session, its clock
        self.recorder: VisitRecorder | None = None
        self._loop = asyncio.get_running_loop()  # failures are reported from the loop's callbacks

    def start(self, published: Iterable[tuple[Side, Producer]]) -> None:
        """R1: the media opened; record what is already published (P1: a privileged visit's room
        never even asks)."""
        storage = self.storage
        if storage is None or self.router.privileged or self.recorder is not None:
            return
        if not storage.accepting():  # below the free-space threshold: refuse, loudly
            storage.counters.refused += 1
            health = storage.health()
            self.failed(f"recording refused: {health['free_bytes']} bytes free in the recordings "
                        f"folder, below the {health['min_free_bytes']} bytes threshold", count=False)
            return
        try:
            self.recorder = VisitRecorder(self.visit_id, self.router, storage, now=self.now,
                                          on_failure=self.failed)
            for side, producer in published:
                self.recorder.record(side, producer)
        except OSError as exc:  # a full or broken disk must not break the visit's media path
            log.exception("recording %s could not start", self.visit_id)
            self.failed(f"recording could not start: {exc}")

    def record(self, side: Side, producer: Producer) -> None:
        """A track published once the recording runs."""
        if self.recorder is None:
            return
        try:
            self.recorder.record(side, producer)
        except OSError as exc:  # the visit goes on without this track's recording
            log.exception("recording %s of %s failed", producer.kind, self.visit_id)
            self.failed(f"recording {side} {producer.kind} could not start: {exc}")

    def failed(self, reason: str, *, count: bool = True) -> None:
        """Storage failures are loud: a metric, and a `recording_failed` event. The call goes on."""
        if count and self.storage is not None:
            self.storage.counters.failed += 1
        log.error("recording of visit %s: %s", self.visit_id, reason)
        self._loop.create_task(self.events.report(self._event("recording_failed", detail=reason[:500])))

    async def close(self) -> None:
        """R1, R2: finish the segment and report its manifest, even after a write error (what was
        written is kept, marked truncated). Never raises: the visit is over either way."""
        if self.recorder is None:
            return
        try:
            manifest: dict[str, Any] = await self.recorder.close()
        except Exception as exc:  # the files stay as *.partial: recovered at the next start
            log.exception("closing the recording of %s failed", self.visit_id)
            with contextlib.suppress(Exception):
                await self.events.report(self._event("recording_failed",
                                                     detail=f"closing the recording failed: {exc}"[:500]))
            return
        try:
            await self.events.report(self._event("recording_closed", manifest=manifest))
        except Exception:
            log.exception("reporting the recording of %s failed", self.visit_id)
