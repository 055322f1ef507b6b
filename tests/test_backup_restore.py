"""`openvisit backup` and `openvisit restore` (issue 14), on both databases, through the real
command: a facility with a recorded visit, a paid booking and photo IDs is backed up while the
server runs, restored into an empty database and data folder, and the restore is proven the way an
auditor would (audit chain intact and as long, every recording re-hashed against its signed
manifest, the same visits and the same money). A damaged backup and a target holding data are
refused before anything is overwritten."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from control_api.db.engine import make_engine
from control_api.db.models import AuditEntry, LedgerEntry, Recording, Visit
from openvisit.settings import Mode, Settings
from tests.faults.processes import PYTHON, ROOT
from tests.support import Api
from tests.support_booking import at, book
from tests.support_facility import build_facility
from tests.test_recordings import _recorded_visit

pytestmark = pytest.mark.slow


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update({"OPENVISIT_MODE": settings.mode.value, "OPENVISIT_DATA_DIR": str(settings.data_dir),
                "OPENVISIT_DATABASE_URL": settings.effective_database_url})
    return subprocess.run([PYTHON, "-m", "openvisit.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


async def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, settings, *args)


async def counts(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                "visits": (await conn.execute(select(func.count()).select_from(Visit))).scalar(),
                "ledger": tuple((await conn.execute(select(func.count(), func.sum(LedgerEntry.amount_cents)
                                                           .filter(LedgerEntry.amount_cents > 0)))).one()),
                "audit": (await conn.execute(select(func.count()).select_from(AuditEntry))).scalar(),
                "recordings": (await conn.execute(select(func.count()).select_from(Recording))).scalar(),
            }
    finally:
        await engine.dispose()


@pytest.fixture
async def empty_target(tmp_path: Path, database_url: str) -> AsyncIterator[Settings]:
    """Settings for an empty place to restore into: a new data folder, and for PostgreSQL a new
    database on the same server (dropped afterwards)."""
    data = tmp_path / "restored"
    if not database_url.startswith("postgresql"):
        yield Settings(mode=Mode.TEST, data_dir=data)
        return
    name = f"openvisit_restore_{uuid.uuid4().hex[:10]}"
    admin = make_engine(database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield Settings(mode=Mode.TEST, data_dir=data, database_url=database_url.rsplit("/", 1)[0] + f"/{name}")
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_a_backup_restores_into_an_empty_system_and_verifies(api: Api, loopback_only: None, tmp_path: Path,
                                                                   empty_target: Settings) -> None:
    source = api.ctx.settings
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)  # a photo ID in uploads (V1)
    await _recorded_visit(api, w, visitor)
    (await book(visitor, w.resident_id, at(api, days=3))).ok(201)  # money in the ledger
    assert files(source.uploads_dir), "the approved visitor's photo ID is stored"
    before = await counts(source.effective_database_url)
    assert before["recordings"] == 1 and before["visits"] == 2

    started = time.monotonic()
    made = await run(source, "backup", str(tmp_path / "backups"))
    backup_seconds = time.monotonic() - started
    assert made.returncode == 0, made.stderr
    [folder] = (tmp_path / "backups").glob("openvisit-backup-*")
    assert oct(folder.stat().st_mode & 0o777) == "0o700"  # the signing key and photo IDs are inside

    started = time.monotonic()
    restored = await run(empty_target, "restore", str(folder))
    restore_seconds = time.monotonic() - started
    assert restored.returncode == 0, (restored.stdout, restored.stderr)
    assert "restored and verified" in restored.stdout and "1 recordings match their signed manifests" in restored.stdout
    after = await counts(empty_target.effective_database_url)
    assert after == before  # the same visits, money, audit entries and recordings
    # The restored system verifies on its own, with the restored signing key.
    assert (await run(empty_target, "audit", "verify")).returncode == 0
    verified = await run(empty_target, "recordings", "verify")
    assert verified.returncode == 0 and "1 visits match their signed manifests" in verified.stdout, verified.stdout
    assert files(empty_target.uploads_dir) == files(source.uploads_dir)

    # Restoring again over data is refused, unless asked to replace it.
    again = await run(empty_target, "restore", str(folder))
    assert again.returncode == 1 and "already holds data" in again.stderr, again.stderr
    replaced = await run(empty_target, "restore", str(folder), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert await counts(empty_target.effective_database_url) == before
    print(f"backup {backup_seconds:.2f} s, restore with verification {restore_seconds:.2f} s "
          f"({source.effective_database_url.split(':')[0]})")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_damaged_backup_is_refused_before_anything_is_overwritten(api: Api, loopback_only: None,
                                                                          tmp_path: Path,
                                                                          empty_target: Settings) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    await _recorded_visit(api, w, visitor, seconds=1.0)
    assert (await run(api.ctx.settings, "backup", str(tmp_path / "backups"))).returncode == 0
    [folder] = (tmp_path / "backups").glob("openvisit-backup-*")
    [webm, *_] = sorted(folder.glob("recordings/*/*.webm"))
    data = bytearray(webm.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of evidence changed
    webm.write_bytes(bytes(data))
    refused = await run(empty_target, "restore", str(folder))
    assert refused.returncode == 1 and "damaged" in refused.stderr and webm.name in refused.stderr, refused.stderr
    assert files(empty_target.data_dir) == {}  # nothing written
    # A folder that is not a backup says so.
    (tmp_path / "not-a-backup").mkdir()
    wrong = await run(empty_target, "restore", str(tmp_path / "not-a-backup"))
    assert wrong.returncode == 1 and "is not an openvisit backup" in wrong.stderr
