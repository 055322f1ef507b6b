"""A real `openvisit serve` (or `openvisit sfu`) subprocess for the HTTPS, proxy and health tests
(issue 14), and self-signed certificates made in the test.

    cert = make_certificate(tmp_path / "tls")               # cert.pem + key.pem, SAN 127.0.0.1
    with Served(tmp_path, "--tls-cert", str(cert.cert), "--tls-key", str(cert.key)) as server:
        server.url                                          # https://127.0.0.1:<free port>

The process runs in its own process group with its output in a file (shown when a test fails);
every wait is bounded, and leaving the block kills the group whatever state it is in.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.faults.processes import PYTHON, ROOT

START_TIMEOUT = 60.0  # a cold start imports aiortc and PyAV and migrates the database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    serial: int


def make_certificate(folder: Path, *, days: int = 2) -> Certificate:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost, with a random serial number."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "openvisit test")])
    now = dt.datetime.now(dt.UTC)
    serial = x509.random_serial_number()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path, serial)


def replace_files(target: Certificate, new: Certificate) -> None:
    """Renew as an ACME client does: the new files are renamed over the old ones (atomic each)."""
    for src, dst in ((new.cert, target.cert), (new.key, target.key)):
        staged = dst.with_name(dst.name + ".new")
        staged.write_bytes(src.read_bytes())
        os.replace(staged, dst)


def client_context(trust: Certificate | None) -> ssl.SSLContext:
    """A client context trusting `trust` (verified, hostname 127.0.0.1), or verifying nothing."""
    if trust is None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=str(trust.cert))


def presented_serial(port: int, timeout: float = 5.0) -> int:
    """The serial number of the certificate a new TLS handshake with 127.0.0.1:port presents."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            client_context(None).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


class Served:
    """`openvisit <command> --port <free port> ARGS` in test mode with its own data folder."""

    def __init__(self, root: Path, *args: str, command: str = "serve", env: dict[str, str] | None = None,
                 tls: bool = False, name: str = "serve") -> None:
        self.root = root
        self.port = free_port()
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / f"{name}.log"
        self.tls = tls
        self.argv = [PYTHON, "-m", "openvisit.cli", command, "--port", str(self.port), *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
        self.env.update({"OPENVISIT_MODE": "test", "OPENVISIT_DATA_DIR": str(self.data_dir),
                         "OPENVISIT_MEDIA_ADDRESSES": '["127.0.0.1"]',
                         "OPENVISIT_MEDIA_SECRET": secrets.token_urlsafe(32),
                         "OPENVISIT_JWT_SECRET": secrets.token_urlsafe(32), "PYTHONUNBUFFERED": "1",
                         **(env or {})})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited with {self.proc.returncode}:\n{self.output()}")
            if "openvisit is running at" in self.output() or "signaling at" in self.output():
                return
            time.sleep(0.2)
        raise AssertionError(f"{self.argv} did not start within {START_TIMEOUT} s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-8000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)  # a clean stop first (as a service manager does)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self) -> Served:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
