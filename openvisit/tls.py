"""HTTPS for `openvisit serve` and `openvisit sfu` (issue 14): one server SSLContext, renewed in place.

Browsers give a page the camera and microphone only in a secure context, so a visitor's phone
needs HTTPS (and the signaling WebSocket `wss`). Certificates from ACME (certbot, lego, acme.sh)
are replaced on disk every few weeks; `CertificateWatcher` notices the change (mtime, size or
inode of either file, checked every `tls_reload_seconds`, or at once on SIGHUP) and loads the new
chain into the *same* context, so new handshakes present it without a restart while open
connections carry on.

A renewal is loaded only once it is whole: both files are read once, copied to a private
temporary folder, proved to be a matching pair on a scratch context, and only then loaded into
the live context from those same copies. A half-written renewal (the certificate replaced before
the key) is logged and retried at the next check; the old chain keeps serving meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)
EXPIRY_WARNING = timedelta(days=14)  # ACME clients renew at 30 days left: 14 means renewal is failing


class TlsProblem(Exception):
    """The certificate or key cannot be used; the message is the one line the operator reads."""


def new_server_context() -> ssl.SSLContext:
    """TLS 1.2 and 1.3 only, no compression or renegotiation; ALPN http/1.1 (aiohttp speaks HTTP/1.1)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # Python's default ciphers: forward secrecy, AEAD first
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    return context


def _read(path: Path, what: str, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TlsProblem(f"the TLS {what} file {path} does not exist; check {setting}") from None
    except IsADirectoryError:
        raise TlsProblem(f"the TLS {what} file {path} is a folder, not a PEM file; check {setting}") from None
    except PermissionError:
        raise TlsProblem(f"the TLS {what} file {path} is not readable by this user (uid {os.getuid()}); "
                         f"give it read access (e.g. group ssl-cert) or check {setting}") from None
    except OSError as exc:
        raise TlsProblem(f"the TLS {what} file {path} cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise TlsProblem(f"the TLS {what} file {path} is empty; check {setting}")
    return data


def _check_pem(cert: bytes, key: bytes, cert_file: Path, key_file: Path) -> x509.Certificate:
    """Name the file at fault before OpenSSL does (its errors do not say which file)."""
    try:
        chain = x509.load_pem_x509_certificates(cert)
    except ValueError:
        raise TlsProblem(f"the TLS certificate file {cert_file} holds no PEM certificate "
                         "(-----BEGIN CERTIFICATE-----); check tls_cert_file (--tls-cert)") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except TypeError:
        raise TlsProblem(f"the TLS key {key_file} is encrypted; give an unencrypted key readable only by the "
                         "openvisit user") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsProblem(f"the TLS key file {key_file} holds no PEM private key; check tls_key_file "
                         "(--tls-key)") from None
    if _spki(chain[0].public_key()) != _spki(private.public_key()):
        raise TlsProblem(f"the TLS key {key_file} does not belong to the certificate {cert_file} (the first "
                         "certificate in the file must be the server's own)")
    return chain[0]


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def load_pair(context: ssl.SSLContext, cert_file: Path, key_file: Path) -> x509.Certificate:
    """Load cert_file + key_file into `context`, or raise TlsProblem without touching it.
    Returns the server certificate (for its expiry and serial number)."""
    cert = _read(cert_file, "certificate", "tls_cert_file (--tls-cert)")
    key = _read(key_file, "key", "tls_key_file (--tls-key)")
    leaf = _check_pem(cert, key, cert_file, key_file)
    with tempfile.TemporaryDirectory(prefix="openvisit-tls-") as folder:  # mode 0700: the key stays private
        staged_cert, staged_key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        staged_cert.write_bytes(cert)
        fd = os.open(staged_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        try:
            # A scratch context first: OpenSSL drops the live context's key when a new certificate
            # does not match it, so a pair OpenSSL refuses must never reach the live context.
            new_server_context().load_cert_chain(staged_cert, staged_key, password=_no_password)
        except (ssl.SSLError, TlsProblem) as exc:
            raise TlsProblem(f"cannot use TLS certificate {cert_file} with key {key_file}: "
                             f"{getattr(exc, 'reason', None) or exc}") from None
        context.load_cert_chain(staged_cert, staged_key, password=_no_password)
    _warn_expiry(leaf, cert_file)
    return leaf


def _warn_expiry(leaf: x509.Certificate, cert_file: Path) -> None:
    left = leaf.not_valid_after_utc - datetime.now(UTC)
    if left <= timedelta(0):
        log.error("the TLS certificate %s EXPIRED at %s: browsers refuse this site until it is renewed",
                  cert_file, leaf.not_valid_after_utc.isoformat())
    elif left < EXPIRY_WARNING:
        log.warning("the TLS certificate %s expires in %d days (%s): check that its renewal runs",
                    cert_file, left.days, leaf.not_valid_after_utc.isoformat())


def _no_password() -> str:
    raise TlsProblem("encrypted key")


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A fresh server context holding the pair; TlsProblem (one line) if it cannot."""
    context = new_server_context()
    load_pair(context, cert_file, key_file)
    return context


@dataclass(frozen=True)
class _Stamp:
    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = path.stat()  # follows symlinks: certbot's live/ links point at a new archive/ file
    except OSError:
        return None
    return _Stamp(st.st_mtime_ns, st.st_size, st.st_ino)


class CertificateWatcher:
    """Reloads the live context's chain when either file changes (or on SIGHUP)."""

    def __init__(self, context: ssl.SSLContext, cert_file: Path, key_file: Path, *, interval: float,
                 on_reload: Callable[[], None] | None = None) -> None:
        self.context = context
        self.cert_file = cert_file
        self.key_file = key_file
        self.interval = interval
        self.on_reload = on_reload
        self.reloads = 0
        self._loaded = self._stamps()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sighup = False

    def _stamps(self) -> tuple[_Stamp | None, _Stamp | None]:
        return _stamp(self.cert_file), _stamp(self.key_file)

    def check(self, *, force: bool = False) -> bool:
        """Reload if the files changed since the last load (or `force`); True if reloaded."""
        stamps = self._stamps()
        if not force and stamps == self._loaded:
            return False
        try:
            leaf = load_pair(self.context, self.cert_file, self.key_file)
        except TlsProblem as exc:
            # Mid-renewal or a broken renewal: keep serving the chain loaded before, try again later.
            log.warning("TLS certificate not reloaded, still serving the previous one: %s", exc)
            return False
        self._loaded = stamps
        self.reloads += 1
        log.info("TLS certificate reloaded from %s: serial %x, valid until %s", self.cert_file, leaf.serial_number,
                 leaf.not_valid_after_utc.isoformat())
        if self.on_reload is not None:
            self.on_reload()
        return True

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
            self._sighup = True
        self._task = loop.create_task(self._run())

    def _hangup(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            forced = self._wake.is_set()
            self._wake.clear()
            self.check(force=forced)

    async def stop(self) -> None:
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
