"""Liveness and readiness probes for every openvisit process (issue 14).

`GET /livez`: the process is up and its event loop answers; it checks no dependency, so a
supervisor (systemd, Kubernetes) restarts only a process that is truly stuck.
`GET /readyz`: 200 when this process can serve visits now, else 503; the JSON body names each
check and, for a failed one, what is missing, so the person on call knows what to fix. A load
balancer sends no new visitors to a process that is not ready.

Checks are named async functions registered on the app's `Readiness` (`app[READINESS].add(...)`):
the control API adds the database, the recordings folder and the media plane; a media node its
recordings folder and its media plane; the TURN relay check is added the same way. Checks run
concurrently, each bounded by a timeout, and a check may keep its answer for a second or two so a
probe every second costs no more than one database round trip per interval. Neither endpoint
needs authentication; their answers hold no secrets (no URLs, credentials or file paths).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)
CHECK_TIMEOUT = 3.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str  # what was found, or what is missing and what to do

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail}


Check = Callable[[], Awaitable[CheckResult]]


class _Registered:
    """A check with its cached answer; concurrent probes share one run."""

    def __init__(self, name: str, check: Check, cache_seconds: float, timeout: float, required: bool) -> None:
        self.name = name
        self.required = required
        self.check = check
        self.cache_seconds = cache_seconds
        self.timeout = timeout
        self._answer: tuple[float, CheckResult] | None = None
        self._running: asyncio.Future[CheckResult] | None = None
        self._last_ok: bool | None = None

    async def result(self) -> CheckResult:
        if self._answer is not None and time.monotonic() - self._answer[0] < self.cache_seconds:
            return self._answer[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> CheckResult:
        try:
            result = await asyncio.wait_for(self.check(), self.timeout)
        except TimeoutError:
            result = CheckResult(False, f"no answer within {self.timeout:g} s")
        except Exception as exc:  # a check that breaks says so; it must not break the probe
            log.warning("readiness check %s failed: %s: %s", self.name, type(exc).__name__, exc)
            result = CheckResult(False, f"the check itself failed ({type(exc).__name__})")
        if result.ok != self._last_ok:  # one line per change, not one per probe
            (log.info if result.ok else log.warning)("readiness %s: %s", self.name,
                                                     "ok" if result.ok else result.detail)
            self._last_ok = result.ok
        self._answer = (time.monotonic(), result)
        return result


class Readiness:
    """The named checks `/readyz` runs."""

    def __init__(self) -> None:
        self._checks: dict[str, _Registered] = {}

    def add(self, name: str, check: Check, *, cache_seconds: float = 0.0, timeout: float = CHECK_TIMEOUT,
            required: bool = True) -> None:
        """`required=False`: a failure is reported (`degraded`) but the process stays ready. For
        what only some visits need (the TURN relay): taking every API process out of the load
        balancer because the relay is down would stop the visits that do not need it too."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is registered twice")
        self._checks[name] = _Registered(name, check, cache_seconds, timeout, required)

    def required(self, name: str) -> bool:
        return self._checks[name].required

    @property
    def names(self) -> list[str]:
        return list(self._checks)

    async def run(self) -> dict[str, CheckResult]:
        results = await asyncio.gather(*(c.result() for c in self._checks.values()))
        return dict(zip(self._checks, results, strict=True))


READINESS = web.AppKey("openvisit_readiness", Readiness)


def install_health(app: web.Application, readiness: Readiness) -> None:
    """Add `GET /livez` and `GET /readyz` to `app`, with `readiness` at `app[READINESS]`."""
    app[READINESS] = readiness

    async def livez(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})

    async def readyz(_request: web.Request) -> web.Response:
        results = await readiness.run()
        failed = [name for name, r in results.items() if not r.ok]
        missing = [name for name in failed if readiness.required(name)]
        ready = not missing
        body = {"status": ("ready" if not failed else "degraded") if ready else "not ready",
                "checks": {name: r.as_json() for name, r in results.items()},
                "missing": missing, "degraded": [name for name in failed if name not in missing]}
        return web.json_response(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})

    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)


def _probe_folder(folder: Path, min_free_bytes: int) -> CheckResult:
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        return CheckResult(False, "the recordings folder is a file, not a folder: check data_dir")
    except OSError as exc:
        return CheckResult(False, f"the recordings folder cannot be created ({exc.strerror}): check data_dir "
                                  "and the folder's owner")
    if not folder.is_dir():
        return CheckResult(False, "the recordings folder is not a folder: check data_dir")
    try:  # a real write: permissions, a read-only mount and a full disk all show here
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".openvisit-ready-") as probe:
            probe.write(b"ready")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return CheckResult(False, f"the recordings folder is not writable ({exc.strerror}): give the openvisit "
                                  "user write access, or check the mount")
    free = shutil.disk_usage(folder).free
    mb = 1024 * 1024
    if free < min_free_bytes:
        return CheckResult(False, f"{free // mb} MB free for recordings, below the {min_free_bytes // mb} MB "
                                  "threshold (recordings_min_free_mb): free space or grow the disk")
    return CheckResult(True, f"writable, {free // mb} MB free (threshold {min_free_bytes // mb} MB)")


def recordings_folder_check(folder: Path, min_free_bytes: int) -> Check:
    """The recordings folder exists (or can be made), takes a written file, and has the free space
    below which no recording starts (sfu/recording/storage.py)."""

    async def recordings() -> CheckResult:
        return await asyncio.to_thread(_probe_folder, folder, min_free_bytes)

    return recordings
