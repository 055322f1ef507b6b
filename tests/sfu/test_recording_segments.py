"""R1: no recording is ever lost or overwritten. Segment names (a restart or rejoin starts a new
segment, never reuses one), the control plane's merge of several manifests, the PartyWriter's
bounded close (dead thread, full queue, stalled disk), orphan recovery after a real SIGKILL
(measured: seconds of media lost), and the media node's start-time recovery and health."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import pytest

from control_api.services.recordings import merge_manifests
from loadtests.synthetic_media import encode_opus, encode_vp8
from sfu.recording.party_writer import PartyWriter
from sfu.recording.recorder import VisitRecorder
from sfu.recording.recovery import recover_orphans
from sfu.recording.storage import LocalFolderStorage, next_segment_number, segment_name, segment_number
from sfu.router import EncodedFrame, Router
from sfu.router.frames import vp8_is_keyframe
from tests.support_events import InProcessEventSink

VP8 = encode_vp8(frames=60)
OPUS = encode_opus(packets=50)
HELPER = Path(__file__).with_name("record_until_killed.py")
ROOT = Path(__file__).resolve().parents[2]


def now() -> datetime:
    return datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


async def _no_pli() -> None:
    return None


def decoded(path: Path) -> dict[str, Any]:
    """Decode the whole file as a player would (PyAV): frame counts, last time, decode errors."""
    out: dict[str, Any] = {"video": 0, "audio": 0, "errors": 0, "last": 0.0}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size == 0:
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                out["errors"] += 1
                continue
            for frame in frames:
                media: Any = frame
                out[packet.stream.type] += 1
                if media.pts is not None and media.time_base is not None:
                    out["last"] = max(out["last"], float(media.pts * media.time_base))
    return out


# ---------------------------------------------------------------- segment names (R1)


def test_segment_names_count_final_partial_and_damaged_files() -> None:
    assert segment_name("visitor", 1) == "visitor.webm" and segment_name("resident", 2) == "resident-002.webm"
    assert segment_number("visitor-012.webm.partial", "visitor") == 12
    assert segment_number("visitor.webm.damaged", "visitor") == 1
    assert segment_number("visitor.webm", "resident") is None and segment_number("manifest.json", "visitor") is None
    assert next_segment_number([], "visitor") == 1
    assert next_segment_number(["visitor.webm", "resident.webm.partial"], "resident") == 2
    # Gaps are never refilled: a damaged or partial file of an earlier crash keeps its number.
    assert next_segment_number(["visitor.webm", "visitor-003.webm.damaged", "manifest.json"], "visitor") == 4
    with pytest.raises(ValueError):
        segment_name("monitor", 1)


def test_a_new_recorder_never_reuses_a_partial_or_final_segment(tmp_path: Path) -> None:
    storage = LocalFolderStorage(tmp_path)
    first = storage.reserve_segment("v1", "visitor")
    assert first.name == "visitor.webm" and first.path.name == "visitor.webm.partial"
    first.path.write_bytes(b"evidence before the crash")
    second = storage.reserve_segment("v1", "visitor")  # a rejoin on a new room, while the first is partial
    assert second.name == "visitor-002.webm"
    assert first.path.read_bytes() == b"evidence before the crash"
    # A live writer's file is locked: recovery leaves it alone; once released it is an orphan.
    assert storage.orphan_segments() == []
    first.release()
    assert storage.orphan_segments() == [("v1", first.path)]
    second.release()


# ---------------------------------------------------------------- merging manifests (R2)


def _segment(segment_id: str, started: str, ended: str, names: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": "openvisit.recording-manifest", "visit_id": "v1", "segment_id": segment_id,
            "started_at": started, "ended_at": ended, "parties": {"visitor": ["user-1"]},
            "files": [{"name": n, "party": "visitor", "size": 1, "sha256": "0" * 64} for n in names], **extra}


def test_manifests_of_one_visit_merge_into_one_in_time_order() -> None:
    later = _segment("b", "2026-11-23T15:10:00+00:00", "2026-11-23T15:20:00+00:00", ["visitor-002.webm"])
    earlier = _segment("a", "2026-11-23T15:00:00+00:00", "2026-11-23T15:05:00+00:00", ["visitor.webm"],
                       recovered=True, truncated=True, complete=False, problems=["crash"])
    earlier["files"][0]["truncated"] = True
    merged = merge_manifests([later, earlier])
    assert [f["name"] for f in merged["files"]] == ["visitor.webm", "visitor-002.webm"]
    assert [f["segment"] for f in merged["files"]] == [1, 2]
    assert merged["files"][1]["segment_started_at"] == "2026-11-23T15:10:00+00:00"
    assert merged["started_at"] == "2026-11-23T15:00:00+00:00" and merged["ended_at"] == "2026-11-23T15:20:00+00:00"
    assert merged["truncated"] is True and merged["complete"] is False and merged["problems"] == ["crash"]
    assert [s["segment_id"] for s in merged["segments"]] == ["a", "b"]
    assert merge_manifests([earlier, later]) == merged  # the order of arrival does not matter


# ---------------------------------------------------------------- bounded close


async def test_close_returns_at_once_after_the_writer_thread_died_with_a_full_queue(tmp_path: Path) -> None:
    failures: list[str] = []
    writer = PartyWriter(tmp_path / "no-such-folder" / "visitor.webm.partial", max_queue=2,
                         on_failure=failures.append)
    for i in range(400):  # a keyframe first: the container opens (and fails: its folder does not exist)
        writer.put("video", VP8[i % 60], i * 33, vp8_is_keyframe(VP8[i % 60]))
        if i % 10 == 9:
            writer.flush()
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    assert failures and writer.failed  # reported once, on the loop
    started = time.monotonic()
    result = await asyncio.to_thread(writer.close)
    assert time.monotonic() - started < 1.0
    assert result.error and result.dropped > 0 and not result.written
    assert not writer._thread.is_alive()


STALLED_DISK = """
import asyncio, os, sys, time
from pathlib import Path
from loadtests.synthetic_media import encode_vp8
from sfu.recording.party_writer import PartyWriter
from sfu.router.frames import vp8_is_keyframe

async def main() -> None:
    vp8 = encode_vp8(frames=60)
    fifo = Path(sys.argv[1])
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read: 64 KiB and every write blocks
    writer = PartyWriter(fifo, max_queue=2)
    for i in range(300):
        writer.put("video", vp8[i % 60], i * 33, vp8_is_keyframe(vp8[i % 60]))
        if i % 10 == 9:
            writer.flush()
            await asyncio.sleep(0.02)
    writer.flush()
    started = time.monotonic()
    result = await asyncio.to_thread(writer.close, 1.0)
    print(f"{time.monotonic() - started:.2f} {result.finished} {result.dropped} {writer._thread.daemon}", flush=True)

asyncio.run(main())
"""


def test_close_is_bounded_when_the_disk_stalls(tmp_path: Path) -> None:
    """A FIFO whose reader never reads stands for a stalled disk: the writer's writes block and
    its queue fills. `close` gives up after its timeout, and the process still exits at once
    (the stuck writer is a daemon thread). In a subprocess: the stuck thread never comes back."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", STALLED_DISK, str(tmp_path / "visitor.webm.partial")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    waited, finished, dropped, daemon = out.stdout.split()
    assert float(waited) < 2.0 and finished == "False" and int(dropped) > 0 and daemon == "True"
    assert time.monotonic() - started < 30


# ---------------------------------------------------------------- crash: SIGKILL, then recovery


def _record_and_kill(root: Path, visit_id: str, seconds: float) -> tuple[float, float]:
    """Run the recorder in a subprocess, SIGKILL it after `seconds`; (origin_wall, kill_wall)."""
    proc = subprocess.Popen([sys.executable, str(HELPER), str(root), visit_id, now().isoformat()], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the recorder helper did not start"
        origin_wall = json.loads(line)["origin_wall"]
        time.sleep(max(0.0, origin_wall + seconds - time.time()))
        kill_wall = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return origin_wall, kill_wall


def test_a_killed_recorder_loses_at_most_about_two_seconds_and_is_recovered(tmp_path: Path) -> None:
    storage = LocalFolderStorage(tmp_path)
    origin_wall, kill_wall = _record_and_kill(tmp_path, "v9", seconds=6.0)
    assert sorted(p.name for p in (tmp_path / "v9").iterdir()) == ["resident.webm.partial", "visitor.webm.partial"]
    manifests = recover_orphans(storage)
    assert [m["visit_id"] for m in manifests] == ["v9"]
    manifest = manifests[0]
    assert manifest["recovered"] is True and manifest["truncated"] is True
    started = datetime.fromisoformat(manifest["started_at"])  # read back from the file's header
    assert abs((started - now()).total_seconds()) < 0.1
    assert sorted(p.name for p in (tmp_path / "v9").iterdir()) == ["resident.webm", "visitor.webm"]
    killed_at = kill_wall - origin_wall
    for entry in manifest["files"]:
        path = tmp_path / "v9" / entry["name"]
        assert entry["truncated"] and entry["recovered"] and entry["remuxed"]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        got = decoded(path)
        assert got["errors"] == 0 and got["video"] > 60 and got["audio"] > 100
        lost = killed_at - entry["last_media_ms"] / 1000
        print(f"\nSIGKILL at {killed_at:.2f} s of recording: {entry['name']} ends at "
              f"{entry['last_media_ms'] / 1000:.2f} s, {lost:.2f} s lost")
        assert 0 <= lost <= 2.0, lost
    assert recover_orphans(storage) == []  # nothing left to recover


def test_a_file_that_cannot_be_remuxed_is_kept_and_reported(tmp_path: Path) -> None:
    storage = LocalFolderStorage(tmp_path)
    folder = tmp_path / "v5"
    folder.mkdir()
    (folder / "visitor-002.webm.partial").write_bytes(b"\x1a\x45\xdf\xa3 not really a webm")
    (folder / "resident.webm.partial").write_bytes(b"")
    manifests = recover_orphans(storage)
    files = sorted((f["name"], f.get("damaged")) for m in manifests for f in m["files"])
    assert files == [("resident.webm.damaged", True), ("visitor-002.webm.damaged", True)]
    assert (folder / "visitor-002.webm.damaged").read_bytes() == b"\x1a\x45\xdf\xa3 not really a webm"
    assert storage.counters.recovered == 2 and storage.counters.damaged == 2
    # R1: the next recorder still counts them: no segment number is ever reused.
    assert storage.reserve_segment("v5", "visitor").name == "visitor-003.webm"


async def test_a_recorder_after_a_crash_starts_a_new_segment_and_leaves_the_first_alone(tmp_path: Path) -> None:
    _record_and_kill(tmp_path, "v7", seconds=2.5)
    before = {p.name: p.read_bytes() for p in (tmp_path / "v7").iterdir()}
    storage = LocalFolderStorage(tmp_path)
    router = Router("v7", privileged=False)
    recorder = VisitRecorder("v7", router, storage, now=now)
    video = router.add_producer("user-1", "video", _no_pli)
    recorder.record("visitor", video)
    for i in range(30):
        data = VP8[i]
        video.publish(EncodedFrame("video", data, i * 3000, 90000, vp8_is_keyframe(data), time.monotonic()))
        await asyncio.sleep(0)
    manifest = await recorder.close()
    assert [f["name"] for f in manifest["files"]] == ["visitor-002.webm"]
    assert manifest["complete"] is True and manifest["truncated"] is False
    for name, data in before.items():
        assert (tmp_path / "v7" / name).read_bytes() == data  # untouched


async def test_a_media_node_recovers_orphans_at_start_and_reports_its_health(tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from openvisit.join_tokens import JoinTokenVerifier
    from sfu.node import create_media_node_app

    _record_and_kill(tmp_path, "v8", seconds=2.5)
    sink = InProcessEventSink()
    storage = LocalFolderStorage(tmp_path, min_free_bytes=1 << 60)  # more than any disk: refuses new recordings
    app, _sfu = create_media_node_app(JoinTokenVerifier(Ed25519PrivateKey.generate().public_key()), sink,
                                      recordings=storage)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        async with asyncio.timeout(20):
            event = await sink.wait_for("recording_closed")
        assert event.visit_id == "v8" and event.manifest is not None and event.manifest["recovered"] is True
        assert {f["name"] for f in event.manifest["files"]} == {"visitor.webm", "resident.webm"}
        health = await (await client.get("/v1/health")).json()
        assert health["recordings"]["folder"] == str(tmp_path) and health["recordings"]["free_bytes"] > 0
        assert health["recordings"]["accepting_new_recordings"] is False and health["status"] == "degraded"
        assert health["recordings"]["recovered"] == 2
        metrics = await (await client.get("/metrics")).text()
        assert "openvisit_sfu_recordings_recovered_total 2.0" in metrics
    finally:
        await client.close()


async def test_a_finished_segment_whose_report_a_crash_cut_off_is_reported_at_the_next_start(
        tmp_path: Path) -> None:
    """R1, R2: a crash between a segment's rename into place and its `recording_closed` reaching
    the outbox (here: a recovery that renamed the files, then died before reporting) leaves final
    files no signed manifest lists. The next start reports them under the recorder's own segment
    id, so a report that did get out and this one are one segment to the control plane."""
    from sfu.service import Sfu

    _record_and_kill(tmp_path, "v7", seconds=2.5)
    storage = LocalFolderStorage(tmp_path)
    cut_off = recover_orphans(storage)  # the files are final now; their manifest never leaves this process
    assert sorted(p.name for p in (tmp_path / "v7").iterdir()) == ["resident.webm", "visitor.webm"]
    await asyncio.sleep(0.05)
    sink = InProcessEventSink()
    sfu = Sfu(sink, now, recordings=storage)  # the next start
    assert await sfu.recover_recordings() == 1
    [event] = [e for e in sink.events if e.kind == "recording_closed"]
    assert event.manifest is not None and event.visit_id == "v7"
    assert event.manifest["segment_id"] == cut_off[0]["segment_id"].removesuffix("-recovered")
    assert {f["name"]: f["sha256"] for f in event.manifest["files"]} == {
        f["name"]: f["sha256"] for f in cut_off[0]["files"]}
    # Listed in the signed manifest on disk: nothing is reported again at the start after that.
    (tmp_path / "v7" / "manifest.json").write_text(json.dumps({"document": {"files": event.manifest["files"]}}))
    assert await Sfu(InProcessEventSink(), now, recordings=storage).recover_recordings() == 0
    # A segment finished by this very run is its room's to report, never the start-up scan's.
    (tmp_path / "v7" / "manifest.json").unlink()
    later = Sfu(InProcessEventSink(), now, recordings=storage)
    await asyncio.sleep(0.05)
    for f in (tmp_path / "v7").iterdir():
        f.touch()  # finished after `later` started
    assert await later.recover_recordings() == 0


def test_two_nodes_recovering_one_folder_at_once_finalise_each_orphan_once(tmp_path: Path) -> None:
    """`openvisit serve` and `openvisit sfu` may share a data_dir and start together: each orphan
    is finalised by whichever takes its lock first, never twice, and nothing half-copied is left."""
    from concurrent.futures import ThreadPoolExecutor

    _record_and_kill(tmp_path, "v6", seconds=2.5)
    storages = [LocalFolderStorage(tmp_path), LocalFolderStorage(tmp_path)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(recover_orphans, storages))
    files = [f["name"] for manifests in results for m in manifests for f in m["files"]]
    assert sorted(files) == ["resident.webm", "visitor.webm"]  # each reported by one of the two
    assert sorted(p.name for p in (tmp_path / "v6").iterdir()) == ["resident.webm", "visitor.webm"]
    for name in files:
        got = decoded(tmp_path / "v6" / name)
        assert got["errors"] == 0 and got["video"] > 20
