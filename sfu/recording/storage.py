"""Where recordings live, behind one small interface (a local folder by default).

Files are written under a temporary name in the visit's folder and renamed into place only
when complete (`commit`), so a half-written file is never listed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Protocol

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
PARTIAL = ".partial"


def sha256_file(path: Path) -> str:
    """R2: the digest recorded in the manifest and checked again on intake and export."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class RecordingStorage(Protocol):
    def staging_path(self, visit_id: str, name: str) -> Path: ...
    def commit(self, visit_id: str, name: str) -> Path: ...
    def list(self, visit_id: str) -> list[str]: ...
    def path(self, visit_id: str, name: str) -> Path: ...
    def delete_visit(self, visit_id: str) -> int: ...


def _checked(part: str) -> str:
    if not _SAFE.match(part) or part.endswith(PARTIAL):
        raise ValueError(f"not a safe recording name: {part!r}")
    return part


class LocalFolderStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, visit_id: str) -> Path:
        return self.root / _checked(visit_id)

    def staging_path(self, visit_id: str, name: str) -> Path:
        """Where a file is written while incomplete (never listed)."""
        folder = self._folder(visit_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / (_checked(name) + PARTIAL)

    def commit(self, visit_id: str, name: str) -> Path:
        """Make a complete file visible, atomically and durably."""
        staged, final = self.staging_path(visit_id, name), self.path(visit_id, name)
        with open(staged, "rb") as f:
            os.fsync(f.fileno())
        os.replace(staged, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return final

    def list(self, visit_id: str) -> list[str]:
        folder = self._folder(visit_id)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith(PARTIAL))

    def path(self, visit_id: str, name: str) -> Path:
        return self._folder(visit_id) / _checked(name)

    def delete_visit(self, visit_id: str) -> int:
        """Remove a visit's files (retention, R4). Returns how many were removed."""
        folder = self._folder(visit_id)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
        return count
