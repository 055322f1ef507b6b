"""P3: per privileged visit, a signed attestation, drawn from the audit trail, that no recorder
or monitor was ever attached — with every refused attempt listed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import AuditEntry
from control_api.problems import conflict
from control_api.services import audit, visit_access
from openvisit.signed_documents import sign_document

routes = ApiRoutes()
TAGS = ("privilege",)
ATTACHED = ("monitor.join", "monitor.authorized", "recording.created")
REFUSALS = ("privilege.refused", "media.join_refused")


def breaks_privilege(action: str) -> bool:
    """P3: an entry that shows privileged media reached a recorder, a monitor or a disk: anything
    recording-related on a privileged visit (files reported, segments, recoveries, views), anything
    monitor-related (an authorisation, a join, a leave: a leave implies a join) and every
    `privilege.violation`. Refusals are not: they are the proof working."""
    return (action in ATTACHED or action == "privilege.violation" or action.startswith("recording.")
            or action.startswith("monitor."))


def is_refusal(action: str) -> bool:
    """A refused attempt on the visit (P1: each is audited): listed, never a breach."""
    return action in REFUSALS or action.endswith("_refused")


def evidence_of(e: AuditEntry) -> str:
    """What a breaking entry shows was attached: `recorder` (files, segments, a recording of the
    visit), `monitor`, or `other` (a violation the trail does not attribute)."""
    if e.action.startswith("recording.") or (e.action == "privilege.violation" and any(
            k.startswith("recording") for k in (e.detail or {}))):
        return "recorder"
    if e.action.startswith("monitor."):
        return "monitor"
    return "other"


def _identity_verified(e: AuditEntry) -> bool:
    """A refusal's actor is real only if the trail says so: an unauthenticated or unverifiable source
    (a forged token at the media plane) is a claimed identity, never an actor."""
    stated = (e.detail or {}).get("identity_verified")
    return e.actor_id is not None and stated is not False


def _violation(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "evidence_of": evidence_of(e),
            "actor_id": e.actor_id, "actor_role": e.actor_role, "detail": e.detail}


def _refusal(e: AuditEntry) -> dict[str, Any]:
    verified = _identity_verified(e)
    row: dict[str, Any] = {"seq": e.seq, "at": e.at.isoformat(), "action": e.action,
                           "actor_id": e.actor_id if verified else None,
                           "actor_role": e.actor_role if verified else None, "identity_verified": verified,
                           "detail": e.detail}
    if not verified:
        row["claimed_identity"] = (e.detail or {}).get("claimed_identity") or e.actor_id
    return row


def _statement(recorders: int, monitors: int, other: int, chain_intact: bool) -> str:
    """Never claims "no recorder" or "no monitor" when the trail shows one, nor vouches for a trail
    that does not verify."""
    if not recorders + monitors + other:
        if not chain_intact:
            return ("NOT CLEAN: the audit trail does not verify (it was altered), so it cannot show that no "
                    "recorder or monitor was attached to this visit.")
        return ("No recorder and no monitor was attached to this visit and no media of it was written; "
                "every attempt was refused and is listed.")
    parts = [f"{n} {what}" for n, what in ((recorders, "recorder or recorded-media event(s)"),
                                           (monitors, "monitor event(s)"),
                                           (other, "other privilege violation(s)")) if n]
    return (f"NOT CLEAN: the audit trail of this visit records {recorders + monitors + other} event(s) that "
            f"broke privilege ({', '.join(parts)}), each listed under violations with its time and detail.")


class AttestationOut(BaseModel):
    document: dict[str, Any]
    algorithm: str
    signature: str


@routes.get("/v1/visits/{visit_id}/attestation", summary="Privilege attestation of a privileged visit (P3)",
            roles={Role.ATTORNEY, Role.OPERATOR}, tags=TAGS, response=AttestationOut, errors=(409,))
async def attestation(req: ApiRequest[Any, Any]) -> AttestationOut:
    """For the attorney who booked it and for operators. Signed with the server's Ed25519 key
    (verify with `GET /v1/media/public-key`); `audit_chain_intact` says the trail it was drawn
    from verified when it was issued. `clean` only when the visit's whole trail shows no recorder,
    monitor or `privilege.violation` and the trail verifies; every breaking entry is listed under
    `violations` (time, detail, `evidence_of`), every refusal under `refused_attempts` (an
    unverifiable source's identity as `claimed_identity`, never as the actor)."""
    visit = await visit_access.visible_visit(req.session, req.principal, req.path("visit_id"))
    if visit.visit_type != "privileged":
        raise conflict("only privileged visits are attested; social visits are recorded (rule R1)",
                       slug="not-privileged")
    entries = await audit.for_visit(req.session, visit.id)
    violations = [e for e in entries if breaks_privilege(e.action)]
    refused = [e for e in entries if is_refusal(e.action) and not breaks_privilege(e.action)]
    kinds = [evidence_of(e) for e in violations]
    recorders, monitors = kinds.count("recorder"), kinds.count("monitor")
    chain = await audit.verify(req.session)
    document = {
        "kind": "openvisit.privilege-attestation", "visit_id": visit.id, "facility_id": visit.facility_id,
        "visit_type": visit.visit_type, "status": visit.status, "starts_at": visit.starts_at.isoformat(),
        "ends_at": visit.ends_at.isoformat(), "issued_at": req.now.isoformat(),
        "recorders_attached": recorders, "monitors_attached": monitors,
        "clean": not violations and chain.ok,
        "violations": [_violation(e) for e in violations],
        "refused_attempts": [_refusal(e) for e in refused],
        "audit_entries": len(entries), "audit_chain_intact": chain.ok, "audit_head": chain.head_hash,
        "statement": _statement(recorders, monitors, len(kinds) - recorders - monitors, chain.ok),
    }
    signed = sign_document(req.ctx.join_tokens.signing_key, document)
    return AttestationOut(**signed)
