"""Real processes for fault tests: `openvisit serve`, a standalone `openvisit sfu` node and
participant clients (`python -m tests.faults.participant`), each in its own process group with
its output in a file, so a test can SIGKILL, SIGTERM, SIGSTOP and restart them and read what
they printed when something fails.

    env = ServerEnv.create(tmp_path)                 # data dir, secrets, test mode, loopback media
    with ProcessSet(tmp_path) as procs:
        api = procs.serve(env)                         # waits until GET /v1/media/public-key answers
        api.kill()                                     # SIGKILL (the whole process group)
        api.start()                                    # same data dir, same port
        seconds = api.terminate()                      # SIGTERM; returns how long it took to exit

Everything is bounded: every wait has a timeout, and `ProcessSet.close` (a fixture finalizer)
kills every process group it started, whatever state the test left them in.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
START_TIMEOUT = 45.0  # a cold start imports aiortc and PyAV and migrates the database


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's pick; closed before use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerEnv:
    """The `OPENVISIT_*` environment every openvisit process of one test shares."""

    data_dir: Path
    values: dict[str, str]

    @classmethod
    def create(cls, root: Path, **extra: str) -> ServerEnv:
        data_dir = root / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        values = {
            "OPENVISIT_MODE": "test",
            "OPENVISIT_DATA_DIR": str(data_dir),
            "OPENVISIT_MEDIA_ADDRESSES": '["127.0.0.1"]',
            "OPENVISIT_SWEEP_INTERVAL_SECONDS": "1",
            "OPENVISIT_MEDIA_SECRET": secrets.token_urlsafe(32),
            "OPENVISIT_JWT_SECRET": secrets.token_urlsafe(32),
            **extra,
        }
        return cls(data_dir, values)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        env.update(self.values)
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    @property
    def database(self) -> Path:
        return self.data_dir / "openvisit.sqlite3"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`openvisit ARGS` with this environment (create-operator, audit verify, recordings verify)."""
        return subprocess.run([PYTHON, "-m", "openvisit.cli", *args], env=self.environ(), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, check=False)


class Managed:
    """One process (and its process group): start, signal, wait, with its output in `log_path`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_dir = log_dir
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / f"{name}.log"

    # ------------------------------------------------------------------ lifecycle

    def _popen(self, stdout: Any, stderr: Any) -> subprocess.Popen[bytes]:
        self.starts += 1
        # A session of its own: the process group is the test's handle on it and its children.
        return subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=stdout, stderr=stderr,
                                stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1} at {time.time():.3f}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = self._popen(log, subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> float:
        """SIGKILL the process group; returns the wall time of the kill."""
        t = time.time()
        self.signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
        return t

    def terminate(self, within: float = 30) -> float:
        """SIGTERM the main process only (as a service manager does); the seconds it took to exit.
        One that has not exited `within` seconds is killed, and `within + 1` is returned."""
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
            return within + 1
        return time.monotonic() - t0

    def stop(self) -> None:
        self.signal_group(signal.SIGSTOP)

    def cont(self) -> None:
        self.signal_group(signal.SIGCONT)

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self) -> None:
        """Kill the whole group, whatever it is doing (SIGCONT first: a stopped group dies anyway,
        but its children should not linger stopped)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def output(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:]


class HttpServerProcess(Managed):
    """A process that serves HTTP on `port` once it is ready (`openvisit serve`, `openvisit sfu`)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int,
                 ready_path: str) -> None:
        super().__init__(name, argv, env, log_dir)
        self.port = port
        self.ready_path = ready_path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> None:
        super().start()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> float:
        """Seconds until it answered (any HTTP status counts: it is listening and serving)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if not self.running:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode if self.proc else '?'}:\n"
                                   f"{self.output()}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    resp.read()
                return time.monotonic() - t0
            except urllib.error.HTTPError:
                return time.monotonic() - t0
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.output()}")

    def restart(self, wait: bool = True) -> None:
        if self.running:
            self.kill()
        self.start(wait=wait)


@dataclass
class Line:
    at: float  # wall time the test read it (the participant's own `t` is in `body`)
    body: dict[str, Any]


class ParticipantProcess(Managed):
    """`python -m tests.faults.participant`: its JSON lines are collected as they come."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        super().__init__(name, argv, env, log_dir)
        self.lines: list[Line] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        assert not self.running
        with open(self.log_dir / f"{self.name}.stderr.log", "ab") as err:
            self.proc = self._popen(subprocess.PIPE, err)
        self._reader = threading.Thread(target=self._read, name=f"read-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for raw in self.proc.stdout:
                log.write(raw)
                log.flush()
                try:
                    body = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(body, dict):
                    with self._lock:
                        self.lines.append(Line(time.time(), body))

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [line.body for line in self.lines]
        return [b for b in bodies if (kind is None or b.get("event") == kind)
                and all(b.get(k) == v for k, v in match.items())]

    def wait_for(self, kind: str, timeout: float, *, after: float = 0.0,
                 where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
        """The first line of `kind` the participant stamped (`t`) at or after `after`, waiting up
        to `timeout` seconds; None if none came (or the process ended without it)."""
        deadline = time.monotonic() + timeout
        while True:
            for b in self.events(kind):
                if b.get("t", 0) >= after and (where is None or where(b)):
                    return b
            if time.monotonic() >= deadline:
                return None
            if not self.running and self._reader is not None and not self._reader.is_alive():
                return None
            time.sleep(0.05)

    def frames(self, kind: str = "video") -> int:
        """Frames of `kind` received so far (from the newest `stats` line)."""
        stats = self.events("stats")
        return int(stats[-1]["frames"][kind]) if stats else 0

    def output(self, tail: int = 6000) -> str:
        text = super().output(tail)
        try:
            err = (self.log_dir / f"{self.name}.stderr.log").read_text(errors="replace")[-tail:]
        except OSError:
            err = ""
        return f"{text}\n--- stderr ---\n{err}"


@dataclass
class ProcessSet:
    """Every process a test started; `close()` kills them all (use it as a fixture finalizer)."""

    log_dir: Path
    processes: list[Managed] = field(default_factory=list)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def serve(self, env: ServerEnv, port: int | None = None, *, name: str = "serve", start: bool = True,
              **extra: str) -> HttpServerProcess:
        port = port or free_port()
        argv = [PYTHON, "-m", "openvisit.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = HttpServerProcess(name, argv, env.environ(**extra), self.log_dir, port, "/v1/media/public-key")
        self.processes.append(proc)
        if start:
            proc.start()
        return proc

    def media_node(self, env: ServerEnv, control_url: str, port: int | None = None, *, name: str = "sfu",
                   start: bool = True, **extra: str) -> HttpServerProcess:
        port = port or free_port()
        argv = [PYTHON, "-m", "openvisit.cli", "sfu", "--control-url", control_url, "--host", "127.0.0.1",
                "--port", str(port)]
        # The node serves only /v1/signaling: a plain GET there answers (400, not a WebSocket) once it listens.
        proc = HttpServerProcess(name, argv, env.environ(**extra), self.log_dir, port, "/v1/signaling")
        self.processes.append(proc)
        if start:
            proc.start()
        return proc

    def participant(self, name: str, api_url: str, access_token: str, visit_id: str, *, rejoin: bool = False,
                    give_up: bool = False, max_seconds: float = 120, start: bool = True) -> ParticipantProcess:
        argv = [PYTHON, "-m", "tests.faults.participant", "--api", api_url, "--token", access_token,
                "--visit", visit_id, "--label", name, "--max-seconds", str(max_seconds)]
        if rejoin:
            argv.append("--rejoin")
        if give_up:
            argv.append("--give-up")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        env["PYTHONUNBUFFERED"] = "1"
        proc = ParticipantProcess(name, argv, env, self.log_dir)
        self.processes.append(proc)
        if start:
            proc.start()
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.cleanup()

    def dump(self) -> str:
        """Every process's output tail, for a failure message."""
        return "\n".join(f"===== {p.name} (pid {p.proc.pid if p.proc else '-'}, starts {p.starts}) =====\n"
                         f"{p.output()}" for p in self.processes)

    def __iter__(self) -> Iterator[Managed]:
        return iter(self.processes)
