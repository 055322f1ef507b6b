"""Recording and review through the real API and embedded SFU with aiortc clients: a social visit
is recorded (both parties, one WebM each, signed manifest), investigators find, play (ranges),
flag and export it; the export verifies offline and any altered byte or audit entry is caught;
retention deletes it unless on legal hold; a privileged visit leaves no file at all."""

from __future__ import annotations

import asyncio
import zipfile
from pathlib import Path
from typing import Any

import av
import pytest
from sqlalchemy import select

from control_api.db.models import Recording
from openvisit.cli import _export_verify, _recordings_verify
from openvisit.export_archive import verify_archive
from openvisit.keys import public_pem
from openvisit.signed_documents import verify_document
from tests.support import Api, As
from tests.support_facility import FacilityWorld, build_facility
from tests.test_monitoring import live, until
from tests.test_visit_e2e import _both_receive_video, _join


async def _recording(api: Api, visit_id: str) -> Recording | None:
    async with api.ctx.read_sessions() as session:
        return (await session.scalars(select(Recording).where(Recording.visit_id == visit_id))).one_or_none()


async def _recorded_visit(api: Api, w: FacilityWorld, visitor: As, seconds: float = 3.0) -> dict[str, Any]:
    visit = await live(api, w, visitor)
    family, kiosk = await _join(api, visitor, visit["id"]), await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(family, kiosk)
        await asyncio.sleep(seconds)
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "technical"})).ok()

        async def recorded() -> bool:
            return await _recording(api, visit["id"]) is not None

        assert await until(recorded, 15)
    finally:
        await family.close()
        await kiosk.close()
    return visit


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_social_visit_is_recorded_reviewed_exported_and_verified(api: Api, loopback_only: None,
                                                                          tmp_path: Path) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await _recorded_visit(api, w, visitor)
    recording = await _recording(api, visit["id"])
    assert recording is not None
    manifest = verify_document(api.ctx.join_tokens.public_key, recording.signed_manifest)  # R2
    assert sorted(f["name"] for f in manifest["files"]) == ["resident.webm", "visitor.webm"]
    for f in manifest["files"]:
        with av.open(str(api.ctx.settings.recordings_dir / visit["id"] / f["name"])) as container:
            assert sorted(s.codec_context.name for s in container.streams) == ["opus", "vp8"]
            video = [fr for fr in container.decode(video=0)]
        assert len(video) > 30 and video[0].width == 640

    # On disk too: `openvisit recordings verify` re-hashes against the signed manifest.
    assert _recordings_verify(api.ctx.settings, [visit["id"]]) == 0
    stored = api.ctx.settings.recordings_dir / visit["id"] / "resident.webm"
    original = stored.read_bytes()
    stored.write_bytes(original[:3000] + bytes([original[3000] ^ 0x01]) + original[3001:])
    assert _recordings_verify(api.ctx.settings, [visit["id"]]) == 1
    stored.write_bytes(original)

    # Search: by resident, by visitor, by unit and by dates; other staff and facilities are refused.
    for query in (f"resident_id={w.resident_id}", f"visitor_id={visitor.principal_id}",
                  f"housing_unit_id={w.unit_id}", "from=2000-01-01T00:00:00Z"):
        found = (await w.investigator.get(w.path(f"/recordings?{query}"))).ok()
        assert [r["visit_id"] for r in found] == [visit["id"]], query
    assert (await w.investigator.get(w.path("/recordings?from=2199-01-01T00:00:00Z"))).ok() == []
    for staff in (w.officer, w.admin, visitor):
        assert (await staff.get(w.path("/recordings"))).status == 403
        assert (await staff.get(f"/v1/recordings/{visit['id']}")).status == 403
    other = await build_facility(api)
    (await other.investigator.get(f"/v1/recordings/{visit['id']}")).problem(403)

    # Open and play: ranges make it seekable; links name one file and cannot be forged.
    opened = (await w.investigator.get(f"/v1/recordings/{visit['id']}")).ok()
    url = next(f["url"] for f in opened["files"] if f["name"] == "visitor.webm")
    whole = await api.client.get(url)
    assert whole.status == 200 and whole.headers["Content-Type"] == "video/webm"
    size = len(await whole.read())
    part = await api.client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status == 206 and len(await part.read()) == 100
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert (await api.client.get(url.replace("visitor.webm", "resident.webm"))).status == 403
    assert (await api.client.get(url.split("?")[0] + "?access=forged")).status == 403

    flag = (await w.investigator.post(f"/v1/recordings/{visit['id']}/flags", {"at_seconds": 1.5,
                                                                               "note": "passes a note"})).ok(201)
    (await w.investigator.post(f"/v1/recordings/{visit['id']}/flags", {"at_seconds": 9999, "note": "x"})).problem(422)
    assert [f["id"] for f in (await w.investigator.get(f"/v1/recordings/{visit['id']}")).ok()["flags"]] == [flag["id"]]

    # Export: verifies with only the archive and the server's public key.
    exported = await w.investigator.request("POST", f"/v1/recordings/{visit['id']}/export")
    assert exported.status == 200
    archive = tmp_path / "visit.zip"
    archive.write_bytes(exported.body)
    key_file = tmp_path / "server.pem"
    key_file.write_text(public_pem(api.ctx.join_tokens.public_key))
    assert verify_archive(archive, api.ctx.join_tokens.public_key).ok
    assert _export_verify(str(archive), str(key_file)) == 0
    with zipfile.ZipFile(archive) as z:
        actions = [line for line in z.read("audit.jsonl").decode().splitlines()]
    assert any('"recording.view"' in a for a in actions) and any('"recording.flag"' in a for a in actions)
    assert any('"recording.export"' in a for a in actions) and any('"recording.created"' in a for a in actions)

    # Tampering: one byte of a recording, or one audit entry, is caught.
    assert _export_verify(str(_rewrite(archive, tmp_path / "a.zip", "files/visitor.webm", flip=5000)),
                          str(key_file)) == 1
    assert _export_verify(str(_rewrite(archive, tmp_path / "b.zip", "audit.jsonl",
                                       replace=(b"passes a note", b"passes a book"))), str(key_file)) == 1
    forged_key = tmp_path / "other.pem"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    forged_key.write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    assert _export_verify(str(archive), str(forged_key)) == 1


def _rewrite(source: Path, target: Path, member: str, *, flip: int | None = None,
             replace: tuple[bytes, bytes] | None = None) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == member:
                if flip is not None:
                    data = data[:flip] + bytes([data[flip] ^ 0x01]) + data[flip + 1:]
                if replace is not None:
                    assert replace[0] in data
                    data = data.replace(*replace)
            dst.writestr(info, data)
    return target


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_retention_deletes_recordings_unless_on_legal_hold(api: Api, loopback_only: None) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await _recorded_visit(api, w, visitor, seconds=0.5)
    folder = api.ctx.settings.recordings_dir / visit["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "resident.webm", "visitor.webm"]
    (await w.investigator.put(f"/v1/recordings/{visit['id']}/legal-hold", {"hold": True})).problem(422)
    (await w.investigator.put(f"/v1/recordings/{visit['id']}/legal-hold",
                              {"hold": True, "reason": "case 2026-CR-114"})).ok()
    retention = w.facility.get("retention_days", 365)
    await api.advance(w.operator, (retention + 2) * 86400)
    assert folder.is_dir() and (await _recording(api, visit["id"])).deleted_at is None  # type: ignore[union-attr]
    (await w.admin.put(f"/v1/recordings/{visit['id']}/legal-hold", {"hold": False})).ok()
    await api.advance(w.operator, 60)
    assert not folder.exists()
    recording = await _recording(api, visit["id"])
    assert recording is not None and recording.deleted_at is not None
    (await w.investigator.get(f"/v1/recordings/{visit['id']}")).problem(404)
    from tests.test_monitoring import audit_actions
    actions = await audit_actions(api, visit["id"])
    assert actions.index("recording.hold") < actions.index("recording.release") < actions.index("recording.deleted")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_privileged_visit_leaves_no_recording(api: Api, loopback_only: None) -> None:
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None
    visit = await live(api, w, w.attorney, visit_type="privileged")
    attorney, kiosk = await _join(api, w.attorney, visit["id"]), await _join(api, w.kiosk, visit["id"])
    try:
        await _both_receive_video(attorney, kiosk)
        room = api.ctx.media.rooms[visit["id"]]  # type: ignore[union-attr]
        assert room.recorder is None
        (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "technical"})).ok()
        await asyncio.sleep(0.5)
    finally:
        await attorney.close()
        await kiosk.close()
    assert not (api.ctx.settings.recordings_dir / visit["id"]).exists()
    assert await _recording(api, visit["id"]) is None
    assert (await w.investigator.get(w.path("/recordings"))).ok() == []
    signed = (await w.attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok()
    assert signed["document"]["clean"] is True and signed["document"]["recorders_attached"] == 0


