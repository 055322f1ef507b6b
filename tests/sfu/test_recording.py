"""The recorder writes each party's encoded frames into WebM without transcoding; files stay
playable and in sync for a late party, a rejoin, a video pause and lost frames; privileged
visits are refused before anything exists; files appear only when complete, with digests."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import pytest

from loadtests.synthetic_media import encode_opus, encode_vp8
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import LocalFolderStorage
from sfu.router import EncodedFrame, PrivilegeViolationError, Producer, Router
from sfu.router.frames import vp8_is_keyframe

VP8 = encode_vp8(frames=60)  # keyframes at 0 and 30
OPUS = encode_opus(packets=50)


async def _no_pli() -> None:
    return None


def now() -> datetime:
    return datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


class Party:
    def __init__(self, router: Router, participant_id: str) -> None:
        self.video = router.add_producer(participant_id, "video", _no_pli)
        self.audio = router.add_producer(participant_id, "audio", _no_pli)


async def play(producers: Party, start: float, seconds: float, *, video: bool = True,
               skip: set[int] | None = None, rtp_origin: int = 0) -> None:
    """Publish `seconds` of 30 fps video and 50 pps audio arriving from `start` (recording clock)."""
    events: list[tuple[float, Producer, EncodedFrame]] = []
    for i in range(int(seconds * 30)):
        data = VP8[i % len(VP8)]
        if video and i not in (skip or set()):
            events.append((start + i / 30, producers.video, EncodedFrame(
                "video", data, rtp_origin + i * 3000, 90000, vp8_is_keyframe(data), start + i / 30)))
    for i in range(int(seconds * 50)):
        events.append((start + i / 50, producers.audio, EncodedFrame(
            "audio", OPUS[i % len(OPUS)], rtp_origin + i * 960, 48000, True, start + i / 50)))
    for _, producer, frame in sorted(events, key=lambda e: e[0]):
        producer.publish(frame)
        await asyncio.sleep(0)


def probe(path: Path) -> dict[str, Any]:
    """Open the file as a player would and decode everything in it."""
    out: dict[str, Any] = {"video": [], "audio": [], "errors": 0}
    with av.open(str(path)) as container:
        out["codecs"] = sorted(s.codec_context.name for s in container.streams)
        for packet in container.demux():
            if packet.size == 0:
                continue
            kind = packet.stream.type
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                out["errors"] += 1
                continue
            for frame in frames:
                decoded: Any = frame
                out[kind].append((float(decoded.pts * decoded.time_base), getattr(decoded, "width", None)))
    return out


@pytest.fixture
def storage(tmp_path: Path) -> LocalFolderStorage:
    return LocalFolderStorage(tmp_path / "recordings")


async def test_two_parties_are_recorded_in_sync_without_transcoding(storage: LocalFolderStorage) -> None:
    router = Router("v1", privileged=False)
    recorder = VisitRecorder("v1", router, storage, now=now)
    recorder.timeline.origin = 0.0
    visitor, resident = Party(router, "user-1"), Party(router, "resident-1")
    recorder.record("visitor", visitor.video)
    recorder.record("visitor", visitor.audio)
    recorder.record("resident", resident.video)
    recorder.record("resident", resident.audio)
    await asyncio.gather(play(visitor, 0.0, 2.0), play(resident, 0.0, 2.0))
    assert storage.list("v1") == []  # nothing is listed while it is being written
    manifest = await recorder.close()
    assert storage.list("v1") == ["resident.webm", "visitor.webm"]
    for entry in manifest["files"]:
        path = storage.path("v1", entry["name"])
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and entry["size"] == path.stat().st_size
        got = probe(path)
        assert got["codecs"] == ["opus", "vp8"] and got["errors"] == 0
        assert len(got["video"]) == 60 and got["video"][0][1] == 640
        assert len(got["audio"]) >= 95
        assert got["video"][0][0] < 0.05 and got["audio"][0][0] < 0.05  # both start at the visit's origin
    assert manifest["parties"] == {"resident": ["resident-1"], "visitor": ["user-1"]}


async def test_a_late_party_a_rejoin_a_video_pause_and_lost_frames_stay_playable_and_in_sync(
        storage: LocalFolderStorage) -> None:
    router = Router("v2", privileged=False)
    recorder = VisitRecorder("v2", router, storage, now=now)
    recorder.timeline.origin = 0.0
    visitor = Party(router, "user-1")
    for p in (visitor.video, visitor.audio):
        recorder.record("visitor", p)
    # The visitor pauses video for a second (audio goes on), and loses some delta frames.
    await play(visitor, 0.0, 1.0, skip={5, 6, 17})
    await play(visitor, 1.0, 1.0, video=False, rtp_origin=30 * 3000)
    # The resident joins 1.5 s late, drops, and rejoins at 3 s with a new connection (new producers,
    # a new RTP timestamp origin that wraps around 2^32).
    resident = Party(router, "resident-1")
    for p in (resident.video, resident.audio):
        recorder.record("resident", p)
    await play(resident, 1.5, 1.0)
    await router.remove_producer(resident.video)
    await router.remove_producer(resident.audio)
    again = Party(router, "resident-1")
    for p in (again.video, again.audio):
        recorder.record("resident", p)
    await asyncio.gather(play(again, 3.0, 1.0, rtp_origin=2**32 - 3000 * 10),
                         play(visitor, 2.0, 2.0, rtp_origin=60 * 3000))
    manifest = await recorder.close()

    visitor_file, resident_file = probe(storage.path("v2", "visitor.webm")), probe(storage.path("v2", "resident.webm"))
    for got in (visitor_file, resident_file):
        times = [t for t, _ in got["video"]]
        assert times == sorted(times) and got["errors"] == 0
    # The pause: no visitor video between 1 s and 2 s, audio throughout.
    assert not [t for t, _ in visitor_file["video"] if 1.0 <= t < 1.95]
    assert [t for t, _ in visitor_file["audio"] if 1.0 <= t < 2.0]
    # The late party starts at 1.5 s on the shared timeline; the rejoin resumes at 3 s.
    assert abs(resident_file["video"][0][0] - 1.5) < 0.1
    assert [t for t, _ in resident_file["video"] if 2.9 <= t < 4.1]
    assert not [t for t, _ in resident_file["video"] if 2.6 <= t < 2.95]
    assert {f["party"] for f in manifest["files"]} == {"visitor", "resident"}


async def test_a_privileged_visit_is_refused_before_any_file_exists(storage: LocalFolderStorage) -> None:
    refused: list[tuple[str, str]] = []
    router = Router("v3", privileged=True, on_refusal=lambda who, role: refused.append((who, role)))
    with pytest.raises(PrivilegeViolationError):
        VisitRecorder("v3", router, storage, now=now)
    assert refused == [("recorder-v3", "recorder")]
    assert not (storage.root / "v3").exists()


def test_storage_names_are_checked(storage: LocalFolderStorage) -> None:
    for bad in ("../x", "a/b", "", ".hidden", "x.partial"):
        with pytest.raises(ValueError):
            storage.path(bad, "visitor.webm") if bad != "x.partial" else storage.path("v", bad)
