"""The append-only audit log: who viewed, flagged or exported a recording, which monitor joined
or left a visit, every refused attempt on a privileged visit, every deletion (R3, P1, P3, R4).

`append` runs inside the caller's transaction, so an audited action and its record commit or
roll back together. It locks the chain head, so concurrent appends form one chain.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.auth import Principal
from control_api.db.models import AuditEntry, AuditHead
from control_api.domain.audit_chain import GENESIS, ChainedEntry, ChainReport, entry_digest, verify_chain


async def append(session: AsyncSession, *, now: datetime, action: str, actor: Principal | None = None,
                 actor_id: str | None = None, actor_role: str | None = None, facility_id: str | None = None,
                 visit_id: str | None = None, detail: dict[str, Any] | None = None) -> AuditEntry:
    head = await session.get(AuditHead, 1, with_for_update=True, populate_existing=True)
    if head is None:  # created by the migration; a fresh test schema may lack it
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
        await session.flush()
    if actor is not None:
        actor_id, actor_role = actor.id, actor.role.value
    fields: dict[str, Any] = {"seq": head.seq + 1, "at": now, "action": action, "actor_id": actor_id,
                              "actor_role": actor_role, "facility_id": facility_id, "visit_id": visit_id,
                              "detail": detail or {}, "prev_hash": head.hash}
    entry = AuditEntry(**fields, hash=entry_digest(**fields))
    session.add(entry)
    head.seq, head.hash = entry.seq, entry.hash
    await session.flush()
    return entry


def _chained(e: AuditEntry) -> ChainedEntry:
    return ChainedEntry(seq=e.seq, at=e.at, action=e.action, actor_id=e.actor_id, actor_role=e.actor_role,
                        facility_id=e.facility_id, visit_id=e.visit_id, detail=e.detail, prev_hash=e.prev_hash,
                        hash=e.hash)


async def _all_entries(session: AsyncSession) -> AsyncIterator[ChainedEntry]:
    result = await session.stream_scalars(select(AuditEntry).order_by(AuditEntry.seq).execution_options(
        yield_per=1000))
    async for entry in result:
        yield _chained(entry)


async def verify(session: AsyncSession) -> ChainReport:
    head = await session.get(AuditHead, 1)
    entries = [e async for e in _all_entries(session)]
    return verify_chain(entries, head.seq if head else 0, head.hash if head else GENESIS)


async def for_visit(session: AsyncSession, visit_id: str) -> list[AuditEntry]:
    """A visit's audit excerpt, oldest first (exports, P3 attestations)."""
    return list((await session.scalars(
        select(AuditEntry).where(AuditEntry.visit_id == visit_id).order_by(AuditEntry.seq))).all())


def as_json(e: AuditEntry) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at.isoformat(), "action": e.action, "actor_id": e.actor_id,
            "actor_role": e.actor_role, "facility_id": e.facility_id, "visit_id": e.visit_id, "detail": e.detail,
            "prev_hash": e.prev_hash, "hash": e.hash}
