"""P3 (issue 12): the privilege attestation is drawn from the whole audit trail and cannot lie.
Recorder files reported for a privileged visit are destroyed and audited (P2); the attestation
then says NOT clean and lists the violation. A clean visit stays clean; refusals are listed
without making it unclean, an unverifiable identity marked as such."""

from __future__ import annotations

from datetime import datetime, timedelta

from openvisit.signed_documents import verify_document
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.support_visits import report


async def _privileged(api: Api) -> tuple[object, dict[str, object]]:
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None
    visit = (await book(w.attorney, w.resident_id, at(api, days=1), length=30, visit_type="privileged")).ok(201)
    return w, visit


async def test_p3_recorder_files_for_a_privileged_visit_make_the_attestation_not_clean(api: Api) -> None:
    w, visit = await _privileged(api)
    attorney = w.attorney  # type: ignore[attr-defined]
    start = datetime.fromisoformat(str(visit["starts_at"]))
    clean = verify_document(api.ctx.join_tokens.public_key,
                            (await attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok())
    assert clean["clean"] is True and clean["violations"] == [] and "No recorder" in clean["statement"]
    # Refused attempts are listed, and do not make it unclean; a forged identity is marked unverified.
    await report(api, str(visit["id"]), "join_refused", start, actor="probe-intruder", detail="bad token: signature",
                 source="203.0.113.9", verified=False)
    listed = verify_document(api.ctx.join_tokens.public_key,
                             (await attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok())
    assert listed["clean"] is True
    [attempt] = listed["refused_attempts"]
    assert attempt["actor_id"] is None and attempt["identity_verified"] is False
    assert attempt["detail"]["claimed_identity"] == "probe-intruder"
    # A recorder's manifest arrives for it (a compromised or buggy media node): destroyed, audited (P2).
    manifest = {"kind": "openvisit.recording-manifest", "visit_id": visit["id"], "segment_id": "seg-1",
                "started_at": start.isoformat(), "ended_at": (start + timedelta(minutes=1)).isoformat(),
                "files": [{"name": "visitor.webm", "party": "visitor", "size": 1, "sha256": "0" * 64}]}
    await report(api, str(visit["id"]), "recording_closed", start + timedelta(minutes=1), manifest=manifest)
    signed = (await attorney.get(f"/v1/visits/{visit['id']}/attestation")).ok()
    document = verify_document(api.ctx.join_tokens.public_key, signed)
    assert document["clean"] is False
    assert [v["action"] for v in document["violations"]] == ["privilege.violation"]
    assert document["statement"].startswith("NOT CLEAN") and "No recorder" not in document["statement"]
    assert (await w.operator.get(f"/v1/visits/{visit['id']}/attestation")).ok()["document"]["clean"] is False  # type: ignore[attr-defined]
