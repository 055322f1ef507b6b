"""The audit log's state for the operator (R3, P1, P3, R4): does the hash chain still verify?"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.services import audit

routes = ApiRoutes()
TAGS = ("audit",)


class AuditChainOut(BaseModel):
    ok: bool = Field(description="every entry is present, in order, and unchanged since it was written")
    entries: int = Field(description="entries checked (up to the first break)")
    head_hash: str = Field(description="the chain head's digest")
    problem: str | None = Field(default=None, description="the first break found, when not ok")
    bad_seq: int | None = Field(default=None, description="the sequence number of the first broken entry")
    checked_at: datetime


@routes.get("/v1/audit/verify", summary="Verify the audit log's hash chain", roles={Role.OPERATOR}, tags=TAGS,
            response=AuditChainOut)
async def verify_audit_chain(req: ApiRequest[Any, Any]) -> AuditChainOut:
    """Walks the whole chain, as `openvisit audit verify` does: any edited, removed or reordered
    entry is reported with the first broken sequence number. Operator only."""
    report = await audit.verify(req.session)
    return AuditChainOut(ok=report.ok, entries=report.entries, head_hash=report.head_hash, problem=report.problem,
                         bad_seq=report.bad_seq, checked_at=req.now)
