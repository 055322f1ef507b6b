"""Private file storage for photo IDs: under data_dir/uploads, never under a served root."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

_SIGNATURES = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),
}
PHOTO_ID_TYPES = tuple(_SIGNATURES)


def looks_like(content_type: str, data: bytes) -> bool:
    """The declared type must match the file's magic bytes (no HTML or scripts posing as images)."""
    sigs = _SIGNATURES.get(content_type, ())
    if content_type == "image/webp":
        return data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return any(data.startswith(s) for s in sigs)


def photo_id_dir(uploads_dir: Path) -> Path:
    return uploads_dir / "photo-ids"


def store_photo_id(uploads_dir: Path, data: bytes) -> str:
    """Write atomically with owner-only permissions; returns the stored file name."""
    folder = photo_id_dir(uploads_dir)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = secrets.token_hex(16)
    tmp = folder / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / name)
    return name


def photo_id_path(uploads_dir: Path, name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError("bad stored file name")
    return photo_id_dir(uploads_dir) / name


def remove_photo_id(uploads_dir: Path, name: str) -> None:
    try:
        photo_id_path(uploads_dir, name).unlink()
    except (FileNotFoundError, ValueError):
        pass
