"""Recordings on the control plane (R1-R4): taking a closed recording's manifest from the media
plane (re-hashing the files, signing the manifest with the server's key), search, playback
tokens, flags, legal hold, export and the retention sweep. Every view, flag, export and deletion
is written to the audit log."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import Facility, Recording, RecordingFile, Visit
from control_api.services import audit
from control_api.services.sweeps import sweep
from openvisit.signed_documents import sign_document
from sfu.recording.storage import LocalFolderStorage, sha256_file

log = logging.getLogger(__name__)
MANIFEST_FILE = "manifest.json"
PLAYBACK_AUDIENCE = "openvisit-playback"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def storage(ctx: AppContext) -> LocalFolderStorage:
    return LocalFolderStorage(ctx.settings.recordings_dir)


def _manifest_problem(manifest: dict[str, Any], visit_id: str) -> str | None:
    files = manifest.get("files")
    if manifest.get("visit_id") != visit_id or not isinstance(files, list):
        return "the manifest is not this visit's"
    if not isinstance(manifest.get("started_at"), str) or not isinstance(manifest.get("ended_at"), str):
        return "the manifest has no times"
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and f.get("party") in ("visitor", "resident")
                and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str) and _HEX64.match(f["sha256"])):
            return "a file entry is malformed"
    return None


def merge_manifests(segments: list[dict[str, Any]]) -> dict[str, Any]:
    """R1, R2: a visit's recording as one document, whatever number of segments it took (a
    restart, a rejoin on a new room, a crash recovered). Segments are ordered by their start;
    `files` lists every file of every segment in that order, each naming its segment and that
    segment's start (a file's media times count from it). Pure: the same segments, the same document."""
    ordered = sorted(segments, key=lambda m: (m["started_at"], str(m.get("segment_id") or "")))
    files: list[dict[str, Any]] = []
    parties: dict[str, list[str]] = {}
    problems: list[str] = []
    for number, seg in enumerate(ordered, start=1):
        for f in seg["files"]:
            files.append({**f, "segment": number, "segment_id": seg.get("segment_id"),
                          "segment_started_at": seg["started_at"]})
        for side, ids in (seg.get("parties") or {}).items():
            known = parties.setdefault(side, [])
            known.extend(i for i in ids if i not in known)
        problems.extend(str(p) for p in seg.get("problems") or [])
    return {"kind": ordered[0].get("kind", "openvisit.recording-manifest"), "visit_id": ordered[0]["visit_id"],
            "started_at": min(m["started_at"] for m in ordered), "ended_at": max(m["ended_at"] for m in ordered),
            "timeline": "each file's media times are milliseconds since its segment's started_at",
            "parties": dict(sorted(parties.items())), "segments": ordered, "files": files,
            "complete": all(m.get("complete", True) for m in ordered) and not problems,
            "truncated": any(f.get("truncated") for f in files), "problems": problems}


def segments_of(recording: Recording) -> list[dict[str, Any]]:
    """The segment manifests inside a recording's signed manifest (one, for a recording made before segments)."""
    document = recording.signed_manifest["document"]
    if isinstance(document.get("segments"), list):
        return list(document["segments"])
    return [document]


def _same_time(value: str) -> str:
    return datetime.fromisoformat(value).isoformat()


def add_problem(visit: Visit, problem: dict[str, Any]) -> None:
    """R1: the visit's recording is incomplete; staff see why (visits and recordings views)."""
    visit.recording_problems = [*(visit.recording_problems or []), problem]


async def accept_manifest(session: AsyncSession, ctx: AppContext, visit: Visit, manifest: dict[str, Any],
                          now: datetime) -> Recording | None:
    """R2: check every file against the recorder's digests, merge the segment with the visit's
    earlier ones (R1: several manifests per visit), sign the whole, keep it. A segment already
    merged is ignored (idempotent). A privileged visit's files (which cannot exist, P1/P2) are destroyed."""
    store = storage(ctx)
    if visit.visit_type == "privileged":
        removed = await asyncio.to_thread(store.delete_visit, visit.id)
        await audit.append(session, now=now, action="privilege.violation", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"recording_files_destroyed": removed})
        return None
    existing = await session.get(Recording, visit.id)
    earlier = segments_of(existing) if existing is not None else []
    problem = _manifest_problem(manifest, visit.id)
    if problem is None:
        manifest = {**manifest, "started_at": _same_time(manifest["started_at"]),
                    "ended_at": _same_time(manifest["ended_at"])}
        segment_id = manifest.get("segment_id")
        known_names = {f["name"] for seg in earlier for f in seg.get("files", [])}
        if existing is not None and (any(s.get("segment_id") == segment_id for s in earlier) if segment_id
                                     else all(f["name"] in known_names for f in manifest["files"])):
            return existing  # the same segment reported again (a retry)
        clash = [f["name"] for f in manifest["files"] if f["name"] in known_names]
        if clash:
            problem = f"{', '.join(clash)} already belong to an earlier segment"
    for f in manifest.get("files", []) if problem is None else []:
        try:
            path = store.path(visit.id, f["name"])
            digest = await asyncio.to_thread(sha256_file, path)
        except (FileNotFoundError, ValueError) as exc:  # missing or unsafe: the evidence is not what was reported
            problem = f"{f['name']}: {exc}"
            break
        # Any other OSError (a storage hiccup) propagates: the report is not acknowledged and the
        # media node's outbox delivers it again, instead of the segment being dropped for good.
        if digest != f["sha256"] or path.stat().st_size != f["size"]:
            problem = f"{f['name']} does not match the recorder's digest"
            break
    if problem is not None:
        await audit.append(session, now=now, action="recording.integrity_failed", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"problem": problem})
        return existing
    merged = merge_manifests([*earlier, manifest])
    signed = sign_document(ctx.join_tokens.signing_key, merged)
    if existing is None:
        recording = Recording(visit_id=visit.id, facility_id=visit.facility_id, housing_unit_id=visit.housing_unit_id,
                              resident_id=visit.resident_id, booker_id=visit.booker_id,
                              started_at=datetime.fromisoformat(merged["started_at"]),
                              ended_at=datetime.fromisoformat(merged["ended_at"]), signed_manifest=signed,
                              legal_hold=False, created_at=now)
        session.add(recording)
        await session.flush()
    else:
        recording = existing
        recording.started_at = datetime.fromisoformat(merged["started_at"])
        recording.ended_at = datetime.fromisoformat(merged["ended_at"])
        recording.signed_manifest = signed
    for f in manifest["files"]:
        session.add(RecordingFile(visit_id=visit.id, name=f["name"], party=f["party"],
                                  media_type=f.get("media_type", "video/webm"), size_bytes=f["size"],
                                  sha256=f["sha256"]))
    names = [f["name"] for f in manifest["files"]]
    segment_detail = {"files": names, "segment_id": manifest.get("segment_id"), "segments": len(merged["segments"])}
    await audit.append(session, now=now, action="recording.created" if existing is None else "recording.segment_added",
                       facility_id=visit.facility_id, visit_id=visit.id, detail=segment_detail)
    if manifest.get("recovered"):  # R1: a crash left it; what was on disk was finalised and is kept
        await audit.append(session, now=now, action="recording.recovered", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={**segment_detail, "truncated": True,
                                                      "damaged": [f["name"] for f in manifest["files"]
                                                                  if f.get("damaged")]})
    if manifest.get("recovered") or manifest.get("truncated") or manifest.get("problems"):
        add_problem(visit, {"at": now.isoformat(), "kind": "recovered" if manifest.get("recovered")
                                  else "truncated", "segment_id": manifest.get("segment_id"), "files": names,
                                  "detail": "; ".join(str(p) for p in manifest.get("problems") or [])
                                  or "a file of this segment ended early"})
    await _write_manifest_file(session, store, visit, signed, now)
    return recording


async def _write_manifest_file(session: AsyncSession, store: LocalFolderStorage, visit: Visit,
                               signed: dict[str, Any], now: datetime) -> None:
    """The signed manifest next to the files (for `openvisit recordings verify`). The database holds
    it anyway: a full disk is logged and audited, never fatal to the event intake, and leaves no
    empty or half-written manifest.json behind (the previous one, if any, stays whole)."""
    def write_signed() -> None:
        staged = store.staging_path(visit.id, MANIFEST_FILE)
        try:
            with open(staged, "w") as f:
                f.write(json.dumps(signed, indent=2, sort_keys=True))
                f.flush()
                os.fsync(f.fileno())
            store.commit(visit.id, MANIFEST_FILE)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise

    try:
        await asyncio.to_thread(write_signed)
    except OSError as exc:
        log.error("writing the signed manifest of %s failed (kept in the database): %s", visit.id, exc)
        await audit.append(session, now=now, action="recording.manifest_write_failed", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"error": str(exc), "kept_in": "database"})


async def recording_failed(session: AsyncSession, visit: Visit, *, detail: str | None, occurred_at: datetime,
                           now: datetime) -> None:
    """R1: a recorder stopped on a write error, or a recording was refused for lack of disk space:
    audited, and the visit's recording marked incomplete for staff."""
    if visit.visit_type == "privileged":  # never recorded (P1): nothing to mark
        return
    add_problem(visit, {"at": occurred_at.isoformat(), "kind": "failed", "detail": detail or "recording failed"})
    await audit.append(session, now=now, action="recording.failed", facility_id=visit.facility_id, visit_id=visit.id,
                       detail={"source": "media-plane", "occurred_at": occurred_at.isoformat(), "problem": detail})


def playback_token(ctx: AppContext, visit_id: str, name: str, viewer_id: str, now: datetime) -> str:
    """A short-lived token in the file URL: a <video> element cannot send an Authorization header."""
    claims = {"aud": PLAYBACK_AUDIENCE, "sub": viewer_id, "visit": visit_id, "file": name,
              "exp": int((now + timedelta(hours=2)).timestamp())}
    return jwt.encode(claims, ctx.access_tokens.derived_secret(PLAYBACK_AUDIENCE), algorithm="HS256")


def check_playback_token(ctx: AppContext, token: str, visit_id: str, name: str, now: datetime) -> str:
    """The viewer's id, or ValueError."""
    try:
        claims = jwt.decode(token, ctx.access_tokens.derived_secret(PLAYBACK_AUDIENCE), algorithms=["HS256"],
                            audience=PLAYBACK_AUDIENCE, options={"verify_exp": False})
    except jwt.PyJWTError as exc:
        raise ValueError(str(exc)) from exc
    if claims.get("visit") != visit_id or claims.get("file") != name or claims.get("exp", 0) <= now.timestamp():
        raise ValueError("this playback link is for another file or has expired")
    return str(claims["sub"])


@sweep("delete_expired_recordings")
async def delete_expired_recordings(session: AsyncSession, now: datetime, ctx: AppContext) -> int:
    """R4: recordings past their facility's retention (A8) are deleted unless under legal hold."""
    rows = (await session.execute(
        select(Recording, Facility.retention_days).join(Facility, Facility.id == Recording.facility_id)
        .where(Recording.deleted_at.is_(None), Recording.legal_hold.is_(False))
        .order_by(Recording.ended_at).with_for_update(of=Recording))).all()
    store = storage(ctx)
    deleted = 0
    for recording, retention_days in rows:
        if recording.ended_at + timedelta(days=retention_days) > now:
            continue
        removed = await asyncio.to_thread(store.delete_visit, recording.visit_id)
        recording.deleted_at = now
        await audit.append(session, now=now, action="recording.deleted", facility_id=recording.facility_id,
                           visit_id=recording.visit_id,
                           detail={"reason": "retention", "retention_days": retention_days, "files_removed": removed})
        deleted += 1
    return deleted
