"""VisitRecording (sfu/room/visit_recording.py): a social visit is recorded from the start (R1)
and its manifest reported at the end (R2); a privileged visit never is (P1, P2); storage failures
are loud (counted, `recording_failed`) and never break the call."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sfu.events import VisitEvent
from sfu.recording.storage import LocalFolderStorage, Reservation
from sfu.room.visit_recording import VisitRecording
from sfu.router import Router
from tests.support_events import InProcessEventSink


def now() -> datetime:
    return datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


async def _no_pli() -> None:
    return None


def recording(router: Router, storage: LocalFolderStorage | None) -> tuple[VisitRecording, InProcessEventSink]:
    sink = InProcessEventSink()

    def event(kind: Any, **fields: Any) -> VisitEvent:
        return VisitEvent(router.visit_id, kind, now(), **fields)

    return VisitRecording(router.visit_id, router, storage, now=now, events=sink, event=event), sink


async def test_r1_r2_a_social_visit_records_every_published_track_and_reports_its_manifest(tmp_path: Path) -> None:
    router = Router("v1", privileged=False)
    storage = LocalFolderStorage(tmp_path)
    rec, sink = recording(router, storage)
    visitor_audio = router.add_producer("user-1", "audio", _no_pli)
    rec.start([("visitor", visitor_audio)])
    assert rec.recorder is not None and [c.role for c in visitor_audio.consumers] == ["recorder"]
    resident_video = router.add_producer("resident-1", "video", _no_pli)
    rec.record("resident", resident_video)  # published later: recorded too
    assert [c.role for c in resident_video.consumers] == ["recorder"]
    rec.start([])  # a second start does nothing
    await rec.close()
    closed = [e for e in sink.events if e.kind == "recording_closed"]
    assert len(closed) == 1 and closed[0].manifest is not None and closed[0].manifest["visit_id"] == "v1"
    assert storage.counters.failed == storage.counters.refused == 0
    await router.close()


async def test_p1_a_privileged_visit_never_even_asks_for_a_recorder(tmp_path: Path) -> None:
    router = Router("v1", privileged=True)
    storage = LocalFolderStorage(tmp_path)
    rec, sink = recording(router, storage)
    producer = router.add_producer("user-1", "audio", _no_pli)
    rec.start([("visitor", producer)])
    rec.record("visitor", producer)
    await rec.close()
    await asyncio.sleep(0)
    assert rec.recorder is None and producer.consumers == [] and sink.events == []  # not even a refusal
    assert storage.list("v1") == []


async def test_a_disk_below_its_threshold_refuses_the_recording_loudly(tmp_path: Path) -> None:
    router = Router("v1", privileged=False)
    storage = LocalFolderStorage(tmp_path, min_free_bytes=2**62)
    rec, sink = recording(router, storage)
    rec.start([("visitor", router.add_producer("user-1", "audio", _no_pli))])
    await asyncio.sleep(0)
    assert rec.recorder is None and storage.counters.refused == 1 and storage.counters.failed == 0
    assert [e.kind for e in sink.events] == ["recording_failed"]
    assert (sink.events[0].detail or "").startswith("recording refused:")


class BrokenStorage(LocalFolderStorage):
    def reserve_segment(self, visit_id: str, party: str) -> Reservation:
        raise OSError(5, "Input/output error")


async def test_a_recording_that_cannot_start_is_reported_and_the_call_goes_on(tmp_path: Path) -> None:
    router = Router("v1", privileged=False)
    storage = BrokenStorage(tmp_path)
    rec, sink = recording(router, storage)
    rec.start([("visitor", router.add_producer("user-1", "audio", _no_pli))])
    rec.record("resident", router.add_producer("resident-1", "audio", _no_pli))
    await asyncio.sleep(0)
    assert storage.counters.failed == 2
    assert [e.kind for e in sink.events] == ["recording_failed", "recording_failed"]
    assert (sink.events[0].detail or "").startswith("recording could not start: [Errno 5]")
    assert (sink.events[1].detail or "").startswith("recording resident audio could not start: [Errno 5]")
    await rec.close()
    await router.close()
