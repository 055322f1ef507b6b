"""Where recordings live, behind one small interface (a local folder by default).

Files are written under a temporary name in the visit's folder and renamed into place only
when complete (`commit`), so a half-written file is never listed.

A visit's recording is a list of segments (R1: nothing is ever lost or overwritten): each
recorder (one per room, i.e. per visit per media-node boot) writes one file per party, named
`visitor.webm` for the first segment and `visitor-002.webm`, `visitor-003.webm`, ... after a
restart or a rejoin on a new room. A new segment takes the next number free among final,
partial and damaged files alike, reserved atomically (O_EXCL) and locked (flock) while it is
written, so a crash leaves a `*.partial` file that the next media node recovers
(`sfu.recording.recovery`) and no later recorder ever reuses.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
PARTIAL = ".partial"
DAMAGED = ".damaged"  # a crashed segment that could not be remuxed: kept as it was, never deleted
MEDIA_SUFFIX = ".webm"
PARTIES = ("visitor", "resident")
_SEGMENT = re.compile(r"^(?P<party>visitor|resident)(?:-(?P<number>\d{3,6}))?\.webm(?:\..*)?$")


def sha256_file(path: Path) -> str:
    """R2: the digest recorded in the manifest and checked again on intake and export."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def segment_name(party: str, number: int) -> str:
    """`visitor.webm` for a visit's first segment, `visitor-002.webm` for the second, ..."""
    if party not in PARTIES or number < 1:
        raise ValueError(f"no segment {number} for {party!r}")
    return f"{party}{MEDIA_SUFFIX}" if number == 1 else f"{party}-{number:03d}{MEDIA_SUFFIX}"


def segment_number(file_name: str, party: str) -> int | None:
    """The segment number a file (final, partial, damaged, remux temp) of `party` holds, else None."""
    match = _SEGMENT.match(file_name)
    if match is None or match["party"] != party:
        return None
    return int(match["number"]) if match["number"] else 1


def next_segment_number(existing: list[str], party: str) -> int:
    """One past the highest segment of `party` among `existing` names (R1: gaps are never refilled)."""
    numbers = [n for name in existing if (n := segment_number(name, party)) is not None]
    return max(numbers, default=0) + 1


@dataclass
class Reservation:
    """A segment's name, reserved for one writer: its `.partial` file exists and `lock_fd` holds an
    exclusive flock on it until the writer is done (a crash releases it: then it is an orphan)."""

    visit_id: str
    name: str
    path: Path  # the .partial file
    lock_fd: int | None

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


@dataclass
class RecordingCounters:
    """Monotonic counts for the metrics (sfu/metrics.py): storage failures are loud."""

    failed: int = 0  # recorders stopped by a write error (disk full, I/O error)
    refused: int = 0  # recordings not started: free space below the threshold
    recovered: int = 0  # orphaned segments finalised at start
    damaged: int = 0  # orphaned segments that could not be remuxed (kept as *.damaged)


class RecordingStorage(Protocol):
    counters: RecordingCounters

    def staging_path(self, visit_id: str, name: str) -> Path: ...
    def reserve_segment(self, visit_id: str, party: str) -> Reservation: ...
    def commit(self, visit_id: str, name: str) -> Path: ...
    def list(self, visit_id: str) -> list[str]: ...
    def path(self, visit_id: str, name: str) -> Path: ...
    def delete_visit(self, visit_id: str) -> int: ...
    def accepting(self) -> bool: ...
    def health(self) -> dict[str, Any]: ...


def _checked(part: str) -> str:
    if not _SAFE.match(part) or part.endswith(PARTIAL):
        raise ValueError(f"not a safe recording name: {part!r}")
    return part


def fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LocalFolderStorage:
    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = root
        self.min_free_bytes = min_free_bytes  # below this a node starts no new recording (reported)
        self.counters = RecordingCounters()

    def _folder(self, visit_id: str) -> Path:
        return self.root / _checked(visit_id)

    def staging_path(self, visit_id: str, name: str) -> Path:
        """Where a file is written while incomplete (never listed)."""
        folder = self._folder(visit_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / (_checked(name) + PARTIAL)

    def reserve_segment(self, visit_id: str, party: str) -> Reservation:
        """R1: the next free segment of `party` (counting final, partial and damaged files), created
        exclusively so that two recorders can never share or truncate one file."""
        folder = self._folder(visit_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        while True:
            name = segment_name(party, next_segment_number([p.name for p in folder.iterdir()], party))
            path = folder / (name + PARTIAL)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another recorder took it between the listing and here
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return Reservation(visit_id, name, path, fd)

    def commit(self, visit_id: str, name: str) -> Path:
        """Make a complete file visible, atomically and durably (never over an existing file's name
        for a segment: reservation made the name unique)."""
        staged, final = self.staging_path(visit_id, name), self.path(visit_id, name)
        with open(staged, "rb") as f:
            os.fsync(f.fileno())
        os.replace(staged, final)
        fsync_dir(final.parent)
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

    def orphan_segments(self) -> builtins.list[tuple[str, Path]]:
        """Media `*.partial` files nobody is writing (no flock held): what a crash left behind."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and _SAFE.match(p.name)):
            for path in sorted(folder.iterdir()):
                if path.name.endswith(MEDIA_SUFFIX + PARTIAL) and _SEGMENT.match(path.name) and is_unlocked(path):
                    found.append((folder.name, path))
        return found

    def free_bytes(self) -> int:
        """Free space for the recordings folder (its nearest existing parent before it exists)."""
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def accepting(self) -> bool:
        """Whether a new recording may start here: free space at or above the threshold."""
        try:
            return self.free_bytes() >= self.min_free_bytes
        except OSError:
            return False

    def health(self) -> dict[str, Any]:
        try:
            free: int | None = self.free_bytes()
        except OSError:
            free = None
        return {"folder": str(self.root), "free_bytes": free, "min_free_bytes": self.min_free_bytes,
                "accepting_new_recordings": free is not None and free >= self.min_free_bytes,
                "failed": self.counters.failed, "refused": self.counters.refused,
                "recovered": self.counters.recovered, "damaged": self.counters.damaged}


@contextlib.contextmanager
def held(path: Path) -> Iterator[bool]:
    """Hold the file's flock for the block (True), or False when a live writer or another
    process's recovery holds it: two media nodes sharing a folder never finalise one orphan twice."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def is_unlocked(path: Path) -> bool:
    """True when no live writer holds the file's flock (a crashed process holds none)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing drops the probe's lock
    return True
