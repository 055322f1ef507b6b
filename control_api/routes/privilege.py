"""P3: per privileged visit, a signed attestation, drawn from the audit trail, that no recorder
or monitor was ever attached — with every refused attempt listed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import Visit
from control_api.problems import conflict, not_found
from control_api.services import audit
from openvisit.signed_documents import sign_document

routes = ApiRoutes()
TAGS = ("privilege",)
ATTACHED = ("monitor.join", "monitor.authorized", "recording.created")


def breaks_privilege(action: str) -> bool:
    """P3: an entry that shows privileged media reached a recorder, a monitor or a disk: anything
    recording-related on a privileged visit (files reported, segments, recoveries) and every
    `privilege.violation`, as well as attachments. Refusals are not: they are the proof working."""
    return action in ATTACHED or action == "privilege.violation" or action.startswith("recording.")


class AttestationOut(BaseModel):
    document: dict[str, Any]
    algorithm: str
    signature: str


@routes.get("/v1/visits/{visit_id}/attestation", summary="Privilege attestation of a privileged visit (P3)",
            roles={Role.ATTORNEY, Role.OPERATOR}, tags=TAGS, response=AttestationOut, errors=(409,))
async def attestation(req: ApiRequest[Any, Any]) -> AttestationOut:
    """For the attorney who booked it and for operators. Signed with the server's Ed25519 key
    (verify with `GET /v1/media/public-key`); `audit_chain_intact` says the trail it was drawn
    from verified when it was issued."""
    visit = await req.session.get(Visit, req.path("visit_id"))
    p = req.principal
    if visit is None or (p.role is Role.ATTORNEY and visit.booker_id != p.id):
        raise not_found("visit")
    if visit.visit_type != "privileged":
        raise conflict("only privileged visits are attested; social visits are recorded (rule R1)",
                       slug="not-privileged")
    entries = await audit.for_visit(req.session, visit.id)
    attached = [e for e in entries if e.action in ATTACHED]
    violations = [e for e in entries if breaks_privilege(e.action)]
    refused = [e for e in entries if e.action.endswith("_refused") or e.action == "privilege.refused"]
    chain = await audit.verify(req.session)
    document = {
        "kind": "openvisit.privilege-attestation", "visit_id": visit.id, "facility_id": visit.facility_id,
        "visit_type": visit.visit_type, "status": visit.status, "starts_at": visit.starts_at.isoformat(),
        "ends_at": visit.ends_at.isoformat(), "issued_at": req.now.isoformat(),
        "recorders_attached": sum(1 for e in attached if e.action.startswith("recording.")),
        "monitors_attached": sum(1 for e in attached if e.action.startswith("monitor.")),
        "clean": not violations,
        "violations": [{"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "actor_id": e.actor_id,
                        "actor_role": e.actor_role, "detail": e.detail} for e in violations],
        "refused_attempts": [{"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "actor_id": e.actor_id,
                              "actor_role": e.actor_role, "identity_verified": e.actor_id is not None,
                              "detail": e.detail} for e in refused],
        "audit_entries": len(entries), "audit_chain_intact": chain.ok, "audit_head": chain.head_hash,
        "statement": ("No recorder and no monitor was attached to this visit and no media of it was written; "
                      "every attempt was refused and is listed." if not violations else
                      f"NOT CLEAN: the audit trail records {len(violations)} event(s) that broke privilege (listed "
                      "under violations)."),
    }
    signed = sign_document(req.ctx.join_tokens.signing_key, document)
    return AttestationOut(**signed)
