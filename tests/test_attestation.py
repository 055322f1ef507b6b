"""P3 (issue 12): the privilege attestation is drawn from the whole audit trail and cannot lie.
Recorder files reported for a privileged visit are destroyed and audited (P2); the attestation
then says NOT clean and lists the violation. A monitor the media plane saw join makes it NOT
clean too. A clean visit stays clean; refusals are listed without making it unclean, an
unverifiable identity marked as such; a trail a DBA edited is never vouched for. Both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from control_api.db.models import AuditEntry
from openvisit.signed_documents import SignatureError, verify_document
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.support_visits import report
from tests.test_audit_log import _as_dba


async def _privileged(api: Api) -> tuple[Any, dict[str, Any]]:
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None
    visit = (await book(w.attorney, w.resident_id, at(api, days=1), length=30, visit_type="privileged")).ok(201)
    return w, visit


async def _attest(api: Api, client: Any, visit: dict[str, Any]) -> dict[str, Any]:
    signed = (await client.get(f"/v1/visits/{visit['id']}/attestation")).ok()
    document: dict[str, Any] = verify_document(api.ctx.join_tokens.public_key, signed)  # raises if forged
    return document


def _start(visit: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(visit["starts_at"]))


async def test_p3_a_clean_privileged_visit_stays_clean(api: Api) -> None:
    w, visit = await _privileged(api)
    document = await _attest(api, w.attorney, visit)
    assert document["clean"] is True and document["violations"] == [] and document["refused_attempts"] == []
    assert document["recorders_attached"] == 0 and document["monitors_attached"] == 0
    assert document["audit_chain_intact"] is True
    assert document["statement"].startswith("No recorder and no monitor was attached")


async def test_p3_refusals_are_listed_but_keep_it_clean_and_a_forged_identity_is_no_actor(api: Api) -> None:
    w, visit = await _privileged(api)
    start = _start(visit)
    # An officer tries to monitor: refused by the control plane (an authenticated, real actor).
    (await w.officer.post(f"/v1/visits/{visit['id']}/monitor", {})).problem(403)
    # A forged token at the media plane: the claimed identity is not an actor.
    await report(api, str(visit["id"]), "join_refused", start, actor="officer-impostor", detail="bad token: signature",
                 source="203.0.113.9", verified=False)
    document = await _attest(api, w.attorney, visit)
    assert document["clean"] is True and document["violations"] == []
    assert "No recorder" in document["statement"]
    by_action = {a["action"]: a for a in document["refused_attempts"]}
    assert set(by_action) == {"privilege.refused", "media.join_refused"}
    officer = by_action["privilege.refused"]
    assert officer["identity_verified"] is True and officer["actor_role"] == "officer" and officer["actor_id"]
    forged = by_action["media.join_refused"]
    assert forged["identity_verified"] is False and forged["actor_id"] is None and forged["actor_role"] is None
    assert forged["claimed_identity"] == "officer-impostor"
    assert forged["detail"]["client_address"] == "203.0.113.9"


async def test_p3_recorder_files_for_a_privileged_visit_make_the_attestation_not_clean(api: Api) -> None:
    w, visit = await _privileged(api)
    start = _start(visit)
    await report(api, str(visit["id"]), "join_refused", start, actor="probe", detail="bad token", verified=False)
    # A recorder's manifest arrives for it (a compromised or buggy media node): destroyed, audited (P2).
    manifest = {"kind": "openvisit.recording-manifest", "visit_id": visit["id"], "segment_id": "seg-1",
                "started_at": start.isoformat(), "ended_at": (start + timedelta(minutes=1)).isoformat(),
                "files": [{"name": "visitor.webm", "party": "visitor", "size": 1, "sha256": "0" * 64}]}
    reported_at = start + timedelta(minutes=1)
    await report(api, str(visit["id"]), "recording_closed", reported_at, manifest=manifest)
    signed = (await w.attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok()
    document = verify_document(api.ctx.join_tokens.public_key, signed)
    assert document["clean"] is False and document["recorders_attached"] == 1 and document["monitors_attached"] == 0
    [violation] = document["violations"]
    assert violation["action"] == "privilege.violation" and violation["evidence_of"] == "recorder"
    assert violation["at"] and "recording_files_destroyed" in violation["detail"]
    assert document["statement"].startswith("NOT CLEAN") and "No recorder" not in document["statement"]
    assert "recorder" in document["statement"]
    assert [a["action"] for a in document["refused_attempts"]] == ["media.join_refused"]  # still listed
    operator = await _attest(api, w.operator, visit)
    assert operator["clean"] is False and len(operator["violations"]) == 1
    signed["document"]["clean"] = True  # the signature covers the verdict
    with pytest.raises(SignatureError):
        verify_document(api.ctx.join_tokens.public_key, signed)


async def test_p3_a_monitor_the_media_plane_saw_makes_it_not_clean(api: Api) -> None:
    w, visit = await _privileged(api)
    start = _start(visit)
    await report(api, str(visit["id"]), "monitor_joined", start + timedelta(minutes=2), actor="monitor-someone")
    await report(api, str(visit["id"]), "monitor_left", start + timedelta(minutes=3), actor="monitor-someone")
    document = await _attest(api, w.attorney, visit)
    assert document["clean"] is False and document["monitors_attached"] == 2 and document["recorders_attached"] == 0
    assert [(v["action"], v["evidence_of"]) for v in document["violations"]] == [
        ("monitor.join", "monitor"), ("monitor.leave", "monitor")]
    assert all(v["at"] for v in document["violations"])
    assert "monitor" in document["statement"] and "No recorder and no monitor" not in document["statement"]


async def test_p3_a_trail_with_the_violation_removed_is_not_vouched_for(api: Api) -> None:
    w, visit = await _privileged(api)
    start = _start(visit)
    manifest = {"kind": "openvisit.recording-manifest", "visit_id": visit["id"], "segment_id": "seg-1",
                "started_at": start.isoformat(), "ended_at": (start + timedelta(minutes=1)).isoformat(),
                "files": [{"name": "visitor.webm", "party": "visitor", "size": 1, "sha256": "0" * 64}]}
    await report(api, str(visit["id"]), "recording_closed", start + timedelta(minutes=1), manifest=manifest)
    await _as_dba(api)  # a DBA deletes the evidence
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(delete(AuditEntry).where(AuditEntry.visit_id == visit["id"],
                                                       AuditEntry.action == "privilege.violation"))
    document = await _attest(api, w.attorney, visit)
    assert document["violations"] == [] and document["audit_chain_intact"] is False
    assert document["clean"] is False and document["statement"].startswith("NOT CLEAN")
    assert "No recorder" not in document["statement"]
