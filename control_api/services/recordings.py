"""Recordings on the control plane (R1-R4): taking a closed recording's manifest from the media
plane (re-hashing the files, signing the manifest with the server's key), search, playback
tokens, flags, legal hold, export and the retention sweep. Every view, flag, export and deletion
is written to the audit log."""

from __future__ import annotations

import asyncio
import json
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

MANIFEST_FILE = "manifest.json"
PLAYBACK_AUDIENCE = "openvisit-playback"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def storage(ctx: AppContext) -> LocalFolderStorage:
    return LocalFolderStorage(ctx.settings.recordings_dir)


def _manifest_problem(manifest: dict[str, Any], visit_id: str) -> str | None:
    files = manifest.get("files")
    if manifest.get("visit_id") != visit_id or not isinstance(files, list):
        return "the manifest is not this visit's"
    for f in files:
        if not (isinstance(f, dict) and isinstance(f.get("name"), str) and f.get("party") in ("visitor", "resident")
                and isinstance(f.get("size"), int) and isinstance(f.get("sha256"), str) and _HEX64.match(f["sha256"])):
            return "a file entry is malformed"
    return None


async def accept_manifest(session: AsyncSession, ctx: AppContext, visit: Visit, manifest: dict[str, Any],
                          now: datetime) -> Recording | None:
    """R2: check every file against the recorder's digests, sign the manifest, keep it.
    Idempotent per visit. A privileged visit's files (which cannot exist, P1/P2) are destroyed."""
    store = storage(ctx)
    if visit.visit_type == "privileged":
        removed = await asyncio.to_thread(store.delete_visit, visit.id)
        await audit.append(session, now=now, action="privilege.violation", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"recording_files_destroyed": removed})
        return None
    existing = await session.get(Recording, visit.id)
    if existing is not None:
        return existing
    problem = _manifest_problem(manifest, visit.id)
    for f in manifest.get("files", []) if problem is None else []:
        try:
            path = store.path(visit.id, f["name"])
            digest = await asyncio.to_thread(sha256_file, path)
        except (OSError, ValueError) as exc:
            problem = f"{f['name']}: {exc}"
            break
        if digest != f["sha256"] or path.stat().st_size != f["size"]:
            problem = f"{f['name']} does not match the recorder's digest"
            break
    if problem is not None:
        await audit.append(session, now=now, action="recording.integrity_failed", facility_id=visit.facility_id,
                           visit_id=visit.id, detail={"problem": problem})
        return None
    signed = sign_document(ctx.join_tokens.signing_key, manifest)

    def write_signed() -> None:
        staged = store.staging_path(visit.id, MANIFEST_FILE)
        staged.write_text(json.dumps(signed, indent=2, sort_keys=True))
        store.commit(visit.id, MANIFEST_FILE)

    await asyncio.to_thread(write_signed)
    recording = Recording(visit_id=visit.id, facility_id=visit.facility_id, housing_unit_id=visit.housing_unit_id,
                          resident_id=visit.resident_id, booker_id=visit.booker_id,
                          started_at=datetime.fromisoformat(manifest["started_at"]),
                          ended_at=datetime.fromisoformat(manifest["ended_at"]), signed_manifest=signed,
                          legal_hold=False, created_at=now)
    session.add(recording)
    await session.flush()
    for f in manifest["files"]:
        session.add(RecordingFile(visit_id=visit.id, name=f["name"], party=f["party"],
                                  media_type=f.get("media_type", "video/webm"), size_bytes=f["size"],
                                  sha256=f["sha256"]))
    await audit.append(session, now=now, action="recording.created", facility_id=visit.facility_id,
                       visit_id=visit.id, detail={"files": [f["name"] for f in manifest["files"]]})
    return recording


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
