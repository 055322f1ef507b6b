"""Private file storage for photo IDs: under data_dir/uploads, never under a served root."""

from __future__ import annotations

import io
import os
import secrets
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

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


_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
MAX_SIDE = 8000  # pixels: a phone's camera is well inside this; a decompression bomb is not
MIN_SIDE = 16  # smaller than this is no photo of a document


class ImageRefusedError(ValueError):
    """The upload is not an image we will store (the message says why)."""


def sanitized_image(content_type: str, data: bytes) -> bytes:
    """V1 photo IDs: decode the image with Pillow and encode it again, so only pixels are kept:
    no metadata (a phone photo's GPS position, EXIF, comments) and nothing appended after the
    image (an HTML or script polyglot). The declared type must be what the bytes decode as,
    within size limits; the camera's rotation is applied before the orientation tag is dropped."""
    expected = _FORMATS.get(content_type)
    if expected is None:
        raise ImageRefusedError(f"{content_type} is not an accepted photo type")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[expected]) as image:
                if max(image.size) > MAX_SIDE or min(image.size) < MIN_SIDE:
                    raise ImageRefusedError(f"a photo ID must be between {MIN_SIDE} and {MAX_SIDE} pixels on each "
                                            f"side (this one is {image.size[0]}x{image.size[1]})")
                image.load()  # every pixel decodes: a truncated or corrupt file is refused
                clean = ImageOps.exif_transpose(image)
                clean = clean.convert("RGBA" if clean.mode in ("RGBA", "LA", "P") and expected != "JPEG" else "RGB")
    except ImageRefusedError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefusedError(f"the file does not decode as a {content_type} image") from exc
    except Exception as exc:  # a decoder's own error on malformed bytes (OSError, ValueError, ...): refused
        raise ImageRefusedError(f"the file does not decode as a {content_type} image ({type(exc).__name__})") \
            from exc
    out = io.BytesIO()
    clean.save(out, format=expected, **({"quality": 90} if expected in ("JPEG", "WEBP") else {}))
    return out.getvalue()


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
