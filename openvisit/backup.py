"""`openvisit backup` and `openvisit restore` (issue 14): everything a facility would lose with the
machine, in one folder, and a restore that proves it worked.

What is lost with a machine and cannot be rebuilt: the database (accounts, visits, the ledger, the
audit chain), the recordings (evidence, R1/R2), the photo IDs (V1) and the signing key (join
tokens, signed recording manifests and exports are checked against it; without it no recording
can be verified again). A backup holds all four: the database as a consistent snapshot (SQLite's
online backup API; `pg_dump` in one snapshot for PostgreSQL), the folders as files, and a
manifest with every file's SHA-256 and the audit chain's length and head as seen in the snapshot.

A restore checks every file against the manifest first (a damaged backup is refused before it
overwrites anything), refuses a target that already holds data unless told to replace it, puts
the files back, then verifies what it restored the way an auditor would: the audit chain intact
and at least as long as the backup says, every recording re-hashed against its signed manifest.
What is not backed up: a media node's outbox and state (events on their way, replayed at its
start) and the settings file (kept with the deployment's configuration).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from openvisit.settings import Settings
from sfu.recording.storage import sha256_file

FORMAT = "openvisit-backup/1"
MANIFEST = "backup-manifest.json"
FOLDERS = ("keys", "recordings", "uploads")  # under data_dir, as Settings names them


class BackupError(Exception):
    """What went wrong, in one line a person can act on."""


@dataclass
class RestoreReport:
    files: int = 0
    audit_entries: int = 0
    recordings_checked: int = 0
    problems: list[str] = field(default_factory=list)


def _engine_kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"cannot back up a database at {url.split(':', 1)[0]}: only SQLite and PostgreSQL")


def _sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1].split("?", 1)[0])


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """pg_dump's and pg_restore's connection arguments for a SQLAlchemy URL, and their environment:
    the password goes in PGPASSWORD, never on the command line (where `ps` shows it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    args = [f"--dbname={parsed.database}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def _tool(name: str) -> str:
    found = shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                                                                reverse=True)), None)
    if found is None:
        raise BackupError(f"{name} is not installed: apt-get install postgresql-client")
    return found


def _run(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=3600, env=env)
    if done.returncode != 0:
        raise BackupError(f"{Path(argv[0]).name} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")


async def _audit_state(url: str) -> tuple[int, str]:
    """The audit chain's length and head hash in the database at `url`; raises if broken."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from control_api.db.engine import make_engine
    from control_api.services import audit

    engine = make_engine(url)
    try:
        async with async_sessionmaker(engine)() as session:
            report = await audit.verify(session)
    finally:
        await engine.dispose()
    if not report.ok:
        raise BackupError(f"the audit chain is broken: {report.problem}")
    return report.entries, report.head_hash


def _copy_folder(source: Path, target: Path, files: list[dict[str, Any]], base: Path) -> None:
    for path in sorted(source.rglob("*")) if source.is_dir() else []:
        if path.is_file() and not path.is_symlink():
            dest = target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copy2(path, dest)
            files.append({"path": str(dest.relative_to(base)), "sha256": sha256_file(dest),
                          "size": dest.stat().st_size})


def create_backup(settings: Settings, destination: Path, *, now: datetime | None = None) -> Path:
    """A new folder under `destination` holding the database snapshot, the folders and the manifest."""
    from control_api.readiness import migration_heads

    now = now or datetime.now(UTC)
    url = settings.effective_database_url
    kind = _engine_kind(url)
    destination.mkdir(parents=True, exist_ok=True)
    folder = destination / f"openvisit-backup-{now:%Y%m%dT%H%M%SZ}"
    work = Path(tempfile.mkdtemp(prefix=".partial-", dir=destination))  # renamed into place when complete
    os.chmod(work, 0o700)  # the signing key and photo IDs are inside
    try:
        files: list[dict[str, Any]] = []
        if kind == "sqlite":
            source = _sqlite_path(url)
            if not source.exists():
                raise BackupError(f"no database at {source}: nothing to back up")
            dump = work / "database.sqlite3"
            with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(dump) as dst:
                src.backup(dst)  # a consistent snapshot while the server writes
            audit_entries, audit_head = asyncio.run(_audit_state(f"sqlite+aiosqlite:///{dump}"))
        else:
            audit_entries, audit_head = asyncio.run(_audit_state(url))  # the dump holds at least these
            dump = work / "database.dump"
            connection, env = _libpq(url)
            _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={dump}", *connection], env)
        files.append({"path": dump.name, "sha256": sha256_file(dump), "size": dump.stat().st_size})
        for name in FOLDERS:
            _copy_folder(settings.data_dir / name, work / name, files, work)
        manifest = {"format": FORMAT, "created_at": now.isoformat(), "database": {"engine": kind, "file": dump.name},
                    "schema": sorted(migration_heads()), "audit": {"entries": audit_entries, "head": audit_head},
                    "files": files}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if folder.exists():
            raise BackupError(f"{folder} already exists")
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return folder


def read_manifest(source: Path) -> dict[str, Any]:
    """The backup's manifest, after every file it lists was re-hashed (nothing restored otherwise)."""
    try:
        manifest: dict[str, Any] = json.loads((source / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} is not an openvisit backup ({MANIFEST}: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{source}: unknown backup format {manifest.get('format')!r}")
    for entry in manifest["files"]:
        path = source / entry["path"]
        if not path.is_file():
            raise BackupError(f"the backup is damaged: {entry['path']} is missing")
        if sha256_file(path) != entry["sha256"]:
            raise BackupError(f"the backup is damaged: {entry['path']} does not match its SHA-256")
    return manifest


async def _has_data(url: str, kind: str) -> bool:
    from sqlalchemy import text

    from control_api.db.engine import make_engine

    if kind == "sqlite" and not _sqlite_path(url).exists():
        return False
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            if kind == "sqlite":
                tables = (await conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type='table'"))).scalar()
            else:
                tables = (await conn.execute(text(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"))).scalar()
    finally:
        await engine.dispose()
    return bool(tables)


def restore_backup(settings: Settings, source: Path, *, replace: bool = False) -> RestoreReport:
    """Put a backup back into this configuration's database and data folder, then verify it."""
    from control_api.readiness import migration_heads

    manifest = read_manifest(source)
    url = settings.effective_database_url
    kind = _engine_kind(url)
    if manifest["database"]["engine"] != kind:
        raise BackupError(f"the backup holds a {manifest['database']['engine']} database; this configuration uses "
                          f"{kind}: restore into the same kind, then migrate data separately")
    unknown = set(manifest["schema"]) - set(migration_heads())
    if unknown:
        raise BackupError(f"the backup's schema ({', '.join(sorted(unknown))}) is newer than this release: "
                          "install the release that made it")
    if not replace:
        if asyncio.run(_has_data(url, kind)):
            raise BackupError("the target database already holds data: restore into an empty one, or pass "
                              "--replace to overwrite it")
        for name in FOLDERS:
            folder = settings.data_dir / name
            if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
                raise BackupError(f"{folder} already holds files: pass --replace to overwrite them")
    dump = source / manifest["database"]["file"]
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = target.with_name(target.name + ".restoring")
        shutil.copyfile(dump, staged)
        for suffix in ("-wal", "-shm"):
            Path(str(target) + suffix).unlink(missing_ok=True)
        os.replace(staged, target)
    else:
        connection, env = _libpq(url)
        _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction", *connection,
              str(dump)], env)
    report = RestoreReport()
    for entry in manifest["files"]:
        top = entry["path"].split("/", 1)[0]
        if top not in FOLDERS:
            continue
        dest = settings.data_dir / entry["path"]
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(source / entry["path"], dest)
        report.files += 1
    keys = settings.keys_dir
    for key in keys.glob("*.pem") if keys.is_dir() else []:
        key.chmod(0o600)
    # Verify what was restored, as an auditor would.
    entries, head = asyncio.run(_audit_state(url))
    report.audit_entries = entries
    if entries < manifest["audit"]["entries"]:
        report.problems.append(f"the restored audit chain has {entries} entries; the backup had "
                               f"{manifest['audit']['entries']}")
    elif entries == manifest["audit"]["entries"] and head != manifest["audit"]["head"]:
        report.problems.append("the restored audit chain's head differs from the backup's")
    from openvisit.export_archive import verify_stored
    from openvisit.keys import load_or_create_signing_key

    public_key = load_or_create_signing_key(keys).public_key()
    folders = sorted(p for p in settings.recordings_dir.glob("*") if p.is_dir())
    for folder in folders:
        report.problems.extend(verify_stored(folder, public_key))
    report.recordings_checked = len(folders)
    return report
