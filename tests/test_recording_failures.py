"""Recording storage failures and crashes through the real API, embedded SFU and aiortc clients.

- A real full disk (a 5 MB tmpfs mounted on the recordings folder, root only; skipped elsewhere,
  failed under CI=true): the recorder stops cleanly, media keeps flowing, `recording_failed` is
  audited and counted, the room ends and is released, the officer's disconnect answers 200, the
  control plane's manifest write leaves no empty file, and shutdown is quick (R1, S4).
- Below the free-space threshold a node refuses to start recording, says so on /v1/health, and
  reports it the same way.
- A recorder killed with SIGKILL: the next segment of the visit does not touch its files; recovery
  finalises them, the control plane merges and signs both segments (R2), audits the recovery, and
  `openvisit recordings verify` / `openvisit export verify` pass (R3). Privileged visits are never
  recorded (P1) — see tests/test_recordings.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from control_api.db.models import Recording, Visit
from openvisit.cli import _export_verify, _recordings_verify
from openvisit.keys import public_pem
from openvisit.settings import Mode, Settings
from openvisit.signed_documents import verify_document
from tests.sfu.test_recording_segments import _record_and_kill, decoded
from tests.support import Api
from tests.support_facility import build_facility
from tests.test_monitoring import audit_actions, live, until
from tests.test_visit_e2e import _both_receive_video, _join

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
MB = 1 << 20


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(mode=Mode.TEST, data_dir=tmp_path / "data", database_url=database_url, recordings_min_free_mb=1)


@pytest.fixture
def small_disk(settings: Settings) -> Iterator[Path]:
    """A real 5 MB filesystem on the recordings folder (tmpfs)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        message = "mounting a tmpfs needs root"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    folder = settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int, name: str = "filler") -> None:
    """Another tenant of the disk takes everything but `leave` bytes."""
    free = shutil.disk_usage(folder).free
    with open(folder / name, "ab") as f:
        f.write(b"\0" * max(0, free - leave))
        f.flush()
        os.fsync(f.fileno())


async def _metrics(api: Api) -> str:
    resp = await api.client.get("/metrics")
    return await resp.text()


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def _visit_row(api: Api, visit_id: str) -> Visit:
    async with api.ctx.read_sessions() as session:
        visit = await session.get(Visit, visit_id)
        assert visit is not None
        return visit


async def _recording(api: Api, visit_id: str) -> Recording | None:
    async with api.ctx.read_sessions() as session:
        return (await session.scalars(select(Recording).where(Recording.visit_id == visit_id))).one_or_none()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_full_disk_stops_the_recorder_loudly_and_the_visit_goes_on(api: Api, loopback_only: None,
                                                                          small_disk: Path) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    fill(small_disk, leave=3 * MB)  # above the 1 MB threshold: recording starts
    family, kiosk = await _join(api, visitor, visit["id"]), await _join(api, w.kiosk, visit["id"])
    sfu = api.ctx.media
    assert sfu is not None
    try:
        await _both_receive_video(family, kiosk)
        room = sfu.rooms[visit["id"]]  # type: ignore[attr-defined]
        assert await until(lambda: _true(room.recorder is not None), 5)
        fill(small_disk, leave=150 * 1024, name="filler-2")  # the disk fills up under the recorder

        async def failed() -> bool:
            return "recording.failed" in await audit_actions(api, visit["id"])

        assert await until(failed, 30), "no recording_failed reported"
        recorder = room.recorder
        assert recorder is not None and recorder.failure and "No space left" in recorder.failure
        # The call goes on: frames keep flowing both ways after the recorder stopped.
        seen = len(family.received["video"]), len(kiosk.received["video"])
        await asyncio.sleep(1.5)
        assert len(family.received["video"]) > seen[0] + 10 and len(kiosk.received["video"]) > seen[1] + 10
        assert not any(c.role == "recorder" for p in room.router.producers for c in p.consumers)
        text = await _metrics(api)
        assert _metric(text, "openvisit_sfu_recordings_failed_total") == 1
        health = await (await api.client.get("/v1/health")).json()
        assert health["recordings"]["accepting_new_recordings"] is False
        assert health["recordings"]["free_bytes"] < MB and health["recordings"]["folder"] == str(small_disk)

        started = time.monotonic()
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "technical"})).ok()  # not 500
        disconnect_seconds = time.monotonic() - started
        print(f"\nofficer disconnect on a full disk answered in {disconnect_seconds:.2f} s")
        assert disconnect_seconds < 15
    finally:
        await family.close()
        await kiosk.close()
    assert visit["id"] not in sfu.rooms  # type: ignore[attr-defined]  # the room is released
    assert _metric(await _metrics(api), "openvisit_sfu_rooms") == 0
    assert not any(t.name.startswith("recorder-") and t.is_alive() for t in __import__("threading").enumerate())
    assert await api.ctx.media.events.drained(15)  # type: ignore[union-attr]  # the outbox delivered the end
    row = await _visit_row(api, visit["id"])
    assert row.status == "disconnected" and row.recording_problems
    assert row.recording_problems[0]["kind"] == "failed"
    # What was written before the disk filled is kept, listed and signed (truncated); the
    # manifest.json write met the full disk: audited, no empty file left behind.
    recording = await _recording(api, visit["id"])
    assert recording is not None
    document = verify_document(api.ctx.join_tokens.public_key, recording.signed_manifest)
    assert document["truncated"] is True and document["complete"] is False
    assert all(f["truncated"] for f in document["files"]) and document["files"]
    folder = small_disk / visit["id"]
    assert not [p.name for p in folder.iterdir() if p.name.startswith("manifest.json")]
    actions = await audit_actions(api, visit["id"])
    assert "recording.created" in actions and "recording.manifest_write_failed" in actions
    # Staff see it: the officer on the visit, the investigator on the recording.
    seen_by_officer = (await w.officer.get(f"/v1/visits/{visit['id']}")).ok()
    assert seen_by_officer["recording_problems"][0]["kind"] == "failed"
    assert (await visitor.get(f"/v1/visits/{visit['id']}")).ok()["recording_problems"] is None
    detail = (await w.investigator.get(f"/v1/recordings/{visit['id']}")).ok()
    assert detail["incomplete"] is True and all(f["truncated"] for f in detail["files"])
    summary = (await w.investigator.get(w.path("/recordings"))).ok()
    assert [r["incomplete"] for r in summary] == [True]
    # Shutdown does not hang on a dead recorder.
    started = time.monotonic()
    await api.client.close()
    shutdown_seconds = time.monotonic() - started
    print(f"shutdown after a full disk took {shutdown_seconds:.2f} s")
    assert shutdown_seconds < 10


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_below_the_free_space_threshold_no_recording_starts_and_it_is_reported(
        api: Api, loopback_only: None, small_disk: Path) -> None:
    fill(small_disk, leave=MB // 2)  # below the 1 MB threshold
    health = await (await api.client.get("/v1/health")).json()
    assert health["recordings"]["accepting_new_recordings"] is False and health["recordings"]["min_free_bytes"] == MB
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    family, kiosk = await _join(api, visitor, visit["id"]), await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(family, kiosk)
        assert family.received["video"] and kiosk.received["video"]

        async def refused() -> bool:
            return "recording.failed" in await audit_actions(api, visit["id"])

        assert await until(refused, 10)
        assert api.ctx.media.rooms[visit["id"]].recorder is None  # type: ignore[union-attr]
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "facility"})).ok()
    finally:
        await family.close()
        await kiosk.close()
    assert _metric(await _metrics(api), "openvisit_sfu_recordings_refused_total") == 1
    row = await _visit_row(api, visit["id"])
    assert row.recording_problems and "refused" in row.recording_problems[0]["detail"]
    assert not (small_disk / visit["id"]).exists() and await _recording(api, visit["id"]) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_killed_recorder_is_recovered_merged_with_the_next_segment_signed_and_verified(
        api: Api, loopback_only: None, tmp_path: Path) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    root = api.ctx.settings.recordings_dir
    started_at = api.ctx.clock.now()
    origin_wall, kill_wall = await asyncio.to_thread(_record_and_kill, root, visit["id"], 4.0)
    folder = root / visit["id"]
    crashed = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert sorted(crashed) == ["resident.webm.partial", "visitor.webm.partial"]
    assert started_at <= api.ctx.clock.now()

    # The parties rejoin (a new room: as after a node restart): a new segment, the old files untouched.
    family, kiosk = await _join(api, visitor, visit["id"]), await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(family, kiosk)
        await asyncio.sleep(2)
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "technical"})).ok()

        async def recorded() -> bool:
            return await _recording(api, visit["id"]) is not None

        assert await until(recorded, 15)
    finally:
        await family.close()
        await kiosk.close()
    for name, digest in crashed.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert {"visitor-002.webm", "resident-002.webm"} <= {p.name for p in folder.iterdir()}

    # The media node's start-time recovery (what `openvisit serve` / `openvisit sfu` run at start).
    assert await api.ctx.media.recover_recordings() == 1  # type: ignore[union-attr]
    assert await api.ctx.media.events.drained(15)  # type: ignore[union-attr]  # reported through the outbox
    recording = await _recording(api, visit["id"])
    assert recording is not None
    manifest = verify_document(api.ctx.join_tokens.public_key, recording.signed_manifest)  # R2
    assert [(f["name"], f["segment"]) for f in manifest["files"]] == [
        ("resident.webm", 1), ("visitor.webm", 1), ("resident-002.webm", 2), ("visitor-002.webm", 2)]
    first = [f for f in manifest["files"] if f["segment"] == 1]
    assert all(f["truncated"] and f["recovered"] for f in first)
    assert manifest["segments"][0]["recovered"] is True and manifest["truncated"] is True
    for f in first:
        got = decoded(folder / f["name"])  # playable: decodes without errors
        assert got["errors"] == 0 and got["video"] > 30
        print(f"\n{f['name']}: recovered {got['last']:.2f} s, killed at {kill_wall - origin_wall:.2f} s")
    actions = await audit_actions(api, visit["id"])
    assert actions.count("recording.recovered") == 1 and "recording.segment_added" in actions
    row = await _visit_row(api, visit["id"])
    assert [p["kind"] for p in row.recording_problems or []] == ["recovered"]

    assert _recordings_verify(api.ctx.settings, [visit["id"]]) == 0  # `openvisit recordings verify`
    assert _recordings_verify(api.ctx.settings, []) == 0
    detail = (await w.investigator.get(f"/v1/recordings/{visit['id']}")).ok()
    assert detail["segments"] == 2 and detail["incomplete"] is True
    assert [(f["name"], f["recovered"]) for f in detail["files"]][:2] == [("resident.webm", True),
                                                                          ("visitor.webm", True)]
    whole = await api.client.get(next(f["url"] for f in detail["files"] if f["name"] == "visitor.webm"))
    assert whole.status == 200 and len(await whole.read()) == (folder / "visitor.webm").stat().st_size
    exported = await w.investigator.request("POST", f"/v1/recordings/{visit['id']}/export")
    archive = tmp_path / "visit.zip"
    archive.write_bytes(exported.body)
    key_file = tmp_path / "server.pem"
    key_file.write_text(public_pem(api.ctx.join_tokens.public_key))
    assert _export_verify(str(archive), str(key_file)) == 0  # `openvisit export verify`, four files
    with av.open(str(folder / "visitor-002.webm")) as container:
        assert sorted(s.codec_context.name for s in container.streams) == ["opus", "vp8"]
