"""The append-only audit log: a hash chain in which any edited, removed or reordered entry is
found by `openvisit audit verify`, and concurrent appends still form one chain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from control_api.db.models import AuditEntry
from control_api.domain.audit_chain import GENESIS, ChainedEntry, entry_digest, verify_chain
from control_api.services import audit
from openvisit.cli import _audit_verify
from tests.support import Api


async def _append(api: Api, n: int, visit_id: str = "visit-1") -> None:
    for i in range(n):
        async with api.ctx.sessions() as session, session.begin():
            await audit.append(session, now=api.ctx.clock.now(), action="recording.view", actor_id=f"user-{i}",
                               actor_role="investigator", facility_id="f-1", visit_id=visit_id,
                               detail={"file": f"visitor-{i}.webm", "note": "ünïcode ok"})


async def _as_dba(api: Api) -> None:
    """Tampering needs more than SQL access: the append-only triggers must go first (a DBA could)."""
    async with api.ctx.sessions() as session, session.begin():
        if api.ctx.engine.dialect.name == "postgresql":
            await session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        else:
            await session.execute(text("DROP TRIGGER audit_entries_no_update"))
            await session.execute(text("DROP TRIGGER audit_entries_no_delete"))


async def _verify(api: Api) -> audit.ChainReport:
    async with api.ctx.read_sessions() as session:
        return await audit.verify(session)


async def test_an_untouched_log_verifies_and_the_cli_agrees(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await _append(api, 5)
    report = await _verify(api)
    assert report.ok and report.entries == 5
    assert await _audit_verify(api.ctx.settings) == 0
    assert "intact: 5 entries" in capsys.readouterr().out


async def test_the_database_refuses_to_change_or_remove_entries(api: Api) -> None:
    await _append(api, 2)
    for statement in (update(AuditEntry).where(AuditEntry.seq == 1).values(action="x"),
                      delete(AuditEntry).where(AuditEntry.seq == 2)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with api.ctx.sessions() as session, session.begin():
                await session.execute(statement)
    assert (await _verify(api)).ok


async def test_an_edited_entry_is_detected(api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    await _append(api, 5)
    await _as_dba(api)
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(detail={"file": "other.webm"}))
    report = await _verify(api)
    assert not report.ok and report.bad_seq == 3 and "altered" in (report.problem or "")
    assert await _audit_verify(api.ctx.settings) == 1
    assert "TAMPERED" in capsys.readouterr().err


async def test_an_edit_that_also_rewrites_the_digest_breaks_the_next_link(api: Api) -> None:
    await _append(api, 5)
    await _as_dba(api)
    async with api.ctx.sessions() as session, session.begin():
        entry = await session.get(AuditEntry, 2)
        assert entry is not None
        entry.actor_id = "someone-else"
        entry.hash = entry_digest(seq=2, at=entry.at, action=entry.action, actor_id="someone-else",
                                  actor_role=entry.actor_role, facility_id=entry.facility_id,
                                  visit_id=entry.visit_id, detail=entry.detail, prev_hash=entry.prev_hash)
    report = await _verify(api)
    assert not report.ok and report.bad_seq == 3


@pytest.mark.parametrize("seq", [1, 3, 5])
async def test_a_removed_entry_is_detected_first_middle_or_last(api: Api, seq: int) -> None:
    await _append(api, 5)
    await _as_dba(api)
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == seq))
    report = await _verify(api)
    assert not report.ok and report.bad_seq == seq


async def test_concurrent_appends_form_one_chain(api: Api) -> None:
    await _append(api, 1)
    await asyncio.gather(*[_append(api, 3, visit_id=f"visit-{n}") for n in range(6)])
    report = await _verify(api)
    assert report.ok and report.entries == 19
    async with api.ctx.read_sessions() as session:
        assert len(await audit.for_visit(session, "visit-2")) == 3
        seqs = (await session.execute(text("SELECT seq FROM audit_entries ORDER BY seq"))).scalars().all()
    assert list(seqs) == list(range(1, 20))


def test_the_chain_rules_without_a_database() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    entries, prev = [], GENESIS
    for seq in (1, 2):
        fields: dict[str, Any] = dict(seq=seq, at=at, action="monitor.join", actor_id="o", actor_role="officer",
                                      facility_id="f", visit_id="v", detail={}, prev_hash=prev)
        prev = entry_digest(**fields)
        entries.append(ChainedEntry(**fields, hash=prev))
    assert verify_chain(entries, 2, prev).ok
    assert not verify_chain(list(reversed(entries)), 2, prev).ok  # reordered
    assert not verify_chain(entries[:1], 2, prev).ok  # the newest removed: the head tells
    assert verify_chain([], 0, GENESIS).ok


async def test_the_operator_reads_the_chain_state_through_the_api(api: Api) -> None:
    """GET /v1/audit/verify (issue 13, the operator console): intact, then the first break; operator only."""
    from control_api.auth import Role

    operator = await api.operator()
    await _append(api, 4)
    state = (await operator.get("/v1/audit/verify")).ok()
    assert state["ok"] is True and state["entries"] == 4 and state["problem"] is None and state["bad_seq"] is None
    assert state["head_hash"] and state["checked_at"]
    for role in (Role.ADMIN, Role.INVESTIGATOR, Role.OFFICER):
        (await (await api.create_user(role)).get("/v1/audit/verify")).problem(403)
    (await (await api.sign_up()).get("/v1/audit/verify")).problem(403)
    (await api.anonymous.get("/v1/audit/verify")).problem(401)
    await _as_dba(api)
    async with api.ctx.sessions() as session, session.begin():
        await session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(action="recording.delete"))
    state = (await operator.get("/v1/audit/verify")).ok()
    assert state["ok"] is False and state["bad_seq"] == 2 and "altered" in state["problem"]
