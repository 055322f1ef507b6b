"""An exported visit (R3): one ZIP with the recording files, the signed manifest, the visit's
audit excerpt and the server's public key. `verify_archive` needs nothing but the archive and
the public key (`openvisit export verify ARCHIVE [--public-key PEM]`), so a court or a defence
lawyer can check it on a machine that has never seen our database.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from control_api.domain.audit_chain import entry_digest
from openvisit.keys import load_public_key, public_pem
from openvisit.signed_documents import SignatureError, verify_document

MANIFEST, AUDIT, KEY = "manifest.json", "audit.jsonl", "public_key.pem"


def verify_stored(folder: Path, public_key: Ed25519PublicKey, notes: list[str] | None = None) -> list[str]:
    """A recording as stored (`data_dir/recordings/<visit>/`): its signed manifest.json and every
    file it lists, however many segments (R1, R2). Returns the problems found (none: intact).
    Files still being written, or left by a crash for the next media node to recover (`*.partial`),
    are not problems: they go to `notes`, as do files the manifest on disk does not list yet."""
    notes = notes if notes is not None else []
    partial = sorted(p.name for p in folder.glob("*.partial")) if folder.is_dir() else []
    if partial:
        notes.append(f"{folder.name}: {len(partial)} file(s) being recorded or awaiting recovery: {', '.join(partial)}")
    if folder.is_dir() and not (folder / MANIFEST).exists() and partial:
        return []
    try:
        manifest = verify_document(public_key, json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError, SignatureError) as exc:
        return [f"{folder.name}/{MANIFEST}: {exc}"]
    listed = {entry["name"] for entry in manifest.get("files", [])}
    unlisted = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST
                      and not p.name.endswith(".partial") and p.name not in listed)
    if unlisted:
        notes.append(f"{folder.name}: not (yet) in the signed manifest on disk: {', '.join(unlisted)}")
    problems = []
    for entry in manifest.get("files", []):
        path = folder / entry["name"]
        if not path.is_file():
            problems.append(f"{folder.name}/{entry['name']}: missing")
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            problems.append(f"{folder.name}/{entry['name']}: its SHA-256 does not match the signed manifest (altered)")
    return problems


def build_archive(files: dict[str, Path], signed_manifest: dict[str, Any], audit_entries: list[dict[str, Any]],
                  public_key: Ed25519PublicKey) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # media is compressed already
        for name, path in sorted(files.items()):
            archive.write(path, f"files/{name}")
        archive.writestr(MANIFEST, json.dumps(signed_manifest, indent=2, sort_keys=True))
        archive.writestr(AUDIT, "".join(json.dumps(e, sort_keys=True) + "\n" for e in audit_entries))
        archive.writestr(KEY, public_pem(public_key))
        archive.writestr("README.txt", "Verify with: openvisit export verify THIS.zip --public-key SERVER_KEY.pem\n"
                                       "manifest.json is signed (Ed25519) by the server; every file's SHA-256 is in "
                                       "it; audit.jsonl holds the visit's hash-chained audit entries.\n")
    return buffer.getvalue()


@dataclass
class ArchiveReport:
    ok: bool
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    audit_entries: int = 0
    key_from_archive: bool = False


def verify_archive(archive_path: Path, public_key: Ed25519PublicKey | None = None) -> ArchiveReport:
    report = ArchiveReport(ok=False)
    try:
        archive = zipfile.ZipFile(archive_path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"not a readable archive: {exc}")
        return report
    with archive:
        names = set(archive.namelist())
        if public_key is None:
            if KEY not in names:
                report.problems.append("no public key given and none in the archive")
                return report
            public_key = load_public_key(archive.read(KEY))
            report.key_from_archive = True
        try:
            manifest = verify_document(public_key, json.loads(archive.read(MANIFEST)))
        except (KeyError, ValueError, SignatureError) as exc:
            report.problems.append(f"manifest.json: {exc}")
            return report
        listed = {f["name"]: f for f in manifest.get("files", [])}
        for name, entry in listed.items():
            member = f"files/{name}"
            if member not in names:
                report.problems.append(f"{name}: missing from the archive")
                continue
            digest = hashlib.sha256()
            with archive.open(member) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() != entry["sha256"]:
                report.problems.append(f"{name}: its SHA-256 does not match the signed manifest (altered)")
            report.files_checked += 1
        extra = {n for n in names if n.startswith("files/")} - {f"files/{n}" for n in listed}
        report.problems.extend(f"{n}: not in the signed manifest" for n in sorted(extra))
        for line in archive.read(AUDIT).decode().splitlines() if AUDIT in names else []:
            e = json.loads(line)
            digest_now = entry_digest(seq=e["seq"], at=datetime.fromisoformat(e["at"]), action=e["action"],
                                      actor_id=e["actor_id"], actor_role=e["actor_role"],
                                      facility_id=e["facility_id"], visit_id=e["visit_id"], detail=e["detail"],
                                      prev_hash=e["prev_hash"])
            if digest_now != e["hash"]:
                report.problems.append(f"audit entry {e['seq']}: altered (its digest does not match)")
            report.audit_entries += 1
    report.ok = not report.problems
    return report
