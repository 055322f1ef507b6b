"""Finalising a segment that did not end normally: an orphan left by a crash (found when a media
node starts) or a file whose writer failed (disk full). R1: nothing is ever lost or overwritten.

`finalise` remuxes the file (stream copy with PyAV: no decoding, no encoding) into its final
name, which gives it the Cues and duration a player needs to seek; the original is removed only
after the copy is complete and synced. A file that cannot be read at all is kept, renamed
`<name>.damaged`, never deleted; a readable file that cannot be copied (the disk is full) is kept
as it is under its final name. Either way it is listed, hashed and reported (R2) with
`truncated: true`, and `recovered: true` when a crash left it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from sfu.recording.storage import (
    DAMAGED,
    PARTIAL,
    LocalFolderStorage,
    fsync_dir,
    held,
    segment_number,
    sha256_file,
)

log = logging.getLogger(__name__)
MANIFEST_KIND = "openvisit.recording-manifest"
REMUX_TEMP = ".remux" + PARTIAL


@dataclass
class Finalised:
    path: Path  # where the file now is (final name, or <final>.damaged)
    remuxed: bool
    damaged: bool
    video_packets: int = 0
    audio_packets: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    metadata: dict[str, str] | None = None
    error: str | None = None

    def count(self, stream_type: str, ms: int | None) -> None:
        """One packet read (or copied): the counts and media span the manifest reports (R2)."""
        if stream_type == "video":
            self.video_packets += 1
        else:
            self.audio_packets += 1
        if ms is not None:
            self.first_ms = ms if self.first_ms is None else min(self.first_ms, ms)
            self.last_ms = ms if self.last_ms is None else max(self.last_ms, ms)


def _ms(packet: Any) -> int | None:
    if packet.pts is None or packet.time_base is None:
        return None
    return round(packet.pts * packet.time_base * 1000)


def remux(source: Path, target: Path) -> Finalised:
    """Stream-copy every readable packet of `source` into a fresh WebM at `target`. A cut at the
    end of the source (a crash mid-cluster) ends the copy there."""
    result = Finalised(target, remuxed=True, damaged=False)
    with av.open(str(source)) as inp:
        result.metadata = {k: v for k, v in inp.metadata.items() if k.startswith("OPENVISIT_")}
        kept = [s for s in inp.streams if s.type in ("audio", "video")]
        if not kept:
            raise ValueError("no audio or video stream")
        with av.open(str(target), "w", format="webm") as out:
            out.metadata.update(inp.metadata)
            mapping = {s.index: out.add_stream_from_template(s) for s in kept}
            try:
                for packet in inp.demux(kept):
                    if packet.dts is None or packet.size == 0:
                        continue
                    ms = _ms(packet)
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)
                    result.count(packet.stream.type, ms)
            except (av.error.InvalidDataError, av.error.EOFError) as exc:  # the cut: keep what came before
                log.info("%s ends early (%s): copied up to %s ms", source, exc, result.last_ms)
    if result.video_packets + result.audio_packets == 0:
        raise ValueError("no packet could be read")
    with open(target, "rb") as f:
        os.fsync(f.fileno())
    return result


def finalise(partial: Path, final: Path) -> Finalised:
    """Turn `partial` into `final` (see the module's docstring). Never deletes unread evidence."""
    temp = final.with_name(final.name + REMUX_TEMP)
    try:
        result = remux(partial, temp)
    except Exception as exc:
        with contextlib.suppress(OSError):
            temp.unlink()
        readable = _readable(partial)
        if readable is None:  # unreadable: keep the bytes as they are, under a name no player is offered
            damaged = final.with_name(final.name + DAMAGED)
            os.replace(partial, damaged)
            fsync_dir(damaged.parent)
            log.error("recording %s cannot be remuxed (%s): kept as %s", partial, exc, damaged.name)
            return Finalised(damaged, remuxed=False, damaged=True, error=str(exc) or type(exc).__name__)
        os.replace(partial, final)  # readable but not copyable (no space): keep it as written
        fsync_dir(final.parent)
        log.error("recording %s could not be remuxed (%s): kept as written", partial, exc)
        readable.path, readable.error = final, str(exc) or type(exc).__name__
        return readable
    os.replace(temp, final)
    fsync_dir(final.parent)
    partial.unlink()
    result.path = final
    return result


def _readable(path: Path) -> Finalised | None:
    """What a player could read of `path` as it is, or None when nothing."""
    result = Finalised(path, remuxed=False, damaged=False)
    try:
        with av.open(str(path)) as inp:
            result.metadata = {k: v for k, v in inp.metadata.items() if k.startswith("OPENVISIT_")}
            try:
                for packet in inp.demux():
                    if packet.dts is None or packet.size == 0:
                        continue
                    result.count(packet.stream.type, _ms(packet))
            except av.error.FFmpegError:
                pass
    except Exception:
        return None
    return result if result.video_packets + result.audio_packets else None


def file_entry(name: str, party: str, participant_ids: list[str], done: Finalised, *,
               truncated: bool, recovered: bool, dropped: int = 0) -> dict[str, Any]:
    """One file of a manifest (R2): size and SHA-256 taken now, from the file as it will be kept."""
    entry: dict[str, Any] = {
        "name": name, "party": party, "participant_ids": participant_ids,
        "media_type": "application/octet-stream" if done.damaged else "video/webm", "codecs": ["vp8", "opus"],
        "size": done.path.stat().st_size, "sha256": sha256_file(done.path), "first_media_ms": done.first_ms,
        "last_media_ms": done.last_ms, "video_packets": done.video_packets, "audio_packets": done.audio_packets,
        "frames_lost_to_disk": dropped, "truncated": truncated}
    if recovered:
        entry["recovered"] = True
    if done.damaged:
        entry["damaged"] = True
    if truncated:
        entry["remuxed"] = done.remuxed
    if done.error:
        entry["problem"] = done.error
    return entry


def recover_orphans(storage: LocalFolderStorage) -> list[dict[str, Any]]:
    """At a media node's start: finalise every orphaned segment (no writer holds its lock) and
    return one manifest per interrupted recorder (visit and segment), each marked `recovered` and
    `truncated` (R1, R2). Blocking (remuxing is disk I/O): run it in a thread."""
    groups: dict[tuple[str, str], list[tuple[str, Finalised]]] = {}
    for visit_id, partial in storage.orphan_segments():
        name = partial.name.removesuffix(PARTIAL)
        party = next((p for p in ("visitor", "resident") if segment_number(name, p) is not None), None)
        if party is None:
            continue
        final = storage.path(visit_id, name)
        with held(partial) as ours:
            if not ours:  # a writer, or another node's recovery, has it now
                continue
            # A copy an earlier recovery of this very file did not finish.
            final.with_name(final.name + REMUX_TEMP).unlink(missing_ok=True)
            try:
                done = finalise(partial, final)
            except OSError:
                log.exception("recovering %s failed; left in place", partial)
                continue
        storage.counters.recovered += 1
        if done.damaged:
            storage.counters.damaged += 1
        recorder = (done.metadata or {}).get("OPENVISIT_SEGMENT")  # its recorder may have reported other files
        segment = f"{recorder}-recovered" if recorder else f"recovered-{name}"
        groups.setdefault((visit_id, segment), []).append((party, done))
    return [_segment_manifest(visit_id, segment, done_files, truncated=True,
                              problem="the media node stopped while recording (crash): recovered up to the last "
                                      "media written")
            for (visit_id, segment), done_files in sorted(groups.items())]


def _segment_manifest(visit_id: str, segment: str, done_files: list[tuple[str, Finalised]], *, truncated: bool,
                      problem: str) -> dict[str, Any]:
    """One segment's manifest (R2) from its files as found on disk, their headers naming the parties."""
    started_at = _started_at(done_files)
    last = max((d.last_ms or 0 for _, d in done_files), default=0)
    ordered = sorted(done_files, key=lambda x: x[0])
    parties = {party: [i for i in ((d.metadata or {}).get("OPENVISIT_PARTICIPANTS") or "").split(",") if i]
               for party, d in ordered}
    return {
        "kind": MANIFEST_KIND, "visit_id": visit_id, "segment_id": segment,
        "started_at": started_at.isoformat(), "ended_at": (started_at + timedelta(milliseconds=last)).isoformat(),
        "timeline": "milliseconds since started_at, shared by every file", "recovered": True,
        "truncated": truncated, "complete": not truncated, "problems": [problem], "parties": parties,
        "files": [file_entry(d.path.name, party, parties[party], d, truncated=truncated, recovered=True)
                  for party, d in ordered]}


def unreported_segments(storage: LocalFolderStorage, finalised_before: float) -> list[dict[str, Any]]:
    """Final segment files that no signed manifest lists: a crash came between a recorder's
    commit (rename) and its `recording_closed` reaching the outbox (R1, R2). Each group is
    reported again under its recorder's own `segment_id` (read from the file's header), so a
    report that did reach the outbox and this one are the same segment to the control plane,
    which keeps the first. Only files finalised before `finalised_before` (this node's start,
    wall clock) are taken: a room closing now reports its own. Blocking: run it in a thread."""
    if not storage.root.is_dir():
        return []
    groups: dict[tuple[str, str], list[tuple[str, Finalised]]] = {}
    for folder in sorted(p for p in storage.root.iterdir() if p.is_dir()):
        listed = _listed(folder)
        for path in sorted(folder.glob("*.webm")):
            party = next((p for p in ("visitor", "resident") if segment_number(path.name, p) is not None), None)
            if party is None or path.name in listed or path.stat().st_mtime >= finalised_before:
                continue
            done = _readable(path)
            segment = (done.metadata or {}).get("OPENVISIT_SEGMENT") if done is not None else None
            if done is None or not segment:
                log.error("recording %s is in no signed manifest and has no readable header: left for an operator",
                          path)
                continue
            groups.setdefault((folder.name, segment), []).append((party, done))
    manifests = []
    for (visit_id, segment), done_files in sorted(groups.items()):
        log.warning("recording segment %s of visit %s was finished but never reported: reporting it now",
                    segment, visit_id)
        manifests.append(_segment_manifest(
            visit_id, segment, done_files, truncated=False,
            problem="finished, but the media node stopped before reporting it: reported at the next start"))
    return manifests


def _listed(folder: Path) -> set[str]:
    """The files the control plane's signed manifest (manifest.json) lists for this visit."""
    try:
        document = json.loads((folder / "manifest.json").read_text()).get("document", {})
    except (OSError, ValueError):
        return set()
    return {str(f.get("name")) for f in document.get("files", []) if isinstance(f, dict)}


def _started_at(done_files: list[tuple[str, Finalised]]) -> datetime:
    for _, done in done_files:
        stamp = (done.metadata or {}).get("OPENVISIT_STARTED_AT")
        if stamp:
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(stamp)
    # No header to read it from: the file's last change, less what it holds.
    newest = max(d.path.stat().st_mtime for _, d in done_files)
    last = max((d.last_ms or 0 for _, d in done_files), default=0)
    return datetime.fromtimestamp(newest, UTC) - timedelta(milliseconds=last)


def new_segment_id() -> str:
    return uuid.uuid4().hex
