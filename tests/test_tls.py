"""HTTPS on a real `openvisit serve` (issue 14): browsers give the camera and microphone only to a
secure context, so a visitor's phone needs HTTPS and the signaling WebSocket over `wss`.

Each test starts the real command on a free loopback port with a certificate made in the test;
renewals are done as an ACME client does them (files renamed into place) and must be served by
new handshakes without a restart; unusable files stop the command with one line at start.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from openvisit.tls import new_server_context
from tests.faults.processes import PYTHON, ROOT
from tests.support_serve import (
    Certificate,
    Served,
    client_context,
    make_certificate,
    presented_serial,
    replace_files,
)

pytestmark = pytest.mark.slow
RELOAD_BOUND_S = 10.0  # a renewal is served within this (the check runs every 0.5 s here)


def tls_args(cert: Certificate) -> tuple[str, ...]:
    return "--tls-cert", str(cert.cert), "--tls-key", str(cert.key)


def wait_for_serial(port: int, serial: int, within: float = RELOAD_BOUND_S) -> float:
    """Seconds until a new handshake presents `serial`; fails after `within`."""
    t0 = time.monotonic()
    seen = None
    while time.monotonic() - t0 < within:
        seen = presented_serial(port)
        if seen == serial:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"after {within} s new handshakes still present serial {seen:x}, not {serial:x}")


async def test_https_with_hsts_and_signaling_over_wss(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path / "tls")
    with Served(tmp_path, *tls_args(cert), tls=True) as server:
        assert f"openvisit is running at https://127.0.0.1:{server.port}/" in server.output()
        async with aiohttp.ClientSession() as http:
            verified = client_context(cert)  # the client checks the chain and the address
            async with http.get(f"{server.url}/app/", ssl=verified) as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert page.headers["Strict-Transport-Security"].startswith("max-age=63072000")
            # The protocol, from a handshake of its own (aiohttp hands a fully read answer's
            # connection back to its pool at once, so the response may no longer hold it).
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                    verified.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
            async with http.get(f"{server.url}/livez", ssl=verified) as live:
                assert live.status == 200 and "Strict-Transport-Security" in live.headers
            async with http.ws_connect(f"wss://127.0.0.1:{server.port}/v1/signaling", ssl=verified) as ws:
                await ws.send_json({"type": "join", "token": "not-a-token"})
                answer = await ws.receive_json(timeout=10)
            assert answer["type"] == "error" and answer["code"] == "bad-token", answer
            # The TLS port speaks no plain HTTP: nothing is served unencrypted.
            with pytest.raises(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{server.port}/app/") as plain:
                    await plain.read()


def test_the_server_context_refuses_tls_older_than_1_2() -> None:
    context = new_server_context()
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path: Path) -> None:
    first = make_certificate(tmp_path / "tls")
    with Served(tmp_path, *tls_args(first), tls=True, env={"OPENVISIT_TLS_RELOAD_SECONDS": "0.5"}) as server:
        assert server.proc is not None
        pid = server.proc.pid
        assert presented_serial(server.port) == first.serial
        renewed = make_certificate(tmp_path / "renewed")
        # Half-way through a renewal (new certificate, old key): the old pair keeps serving.
        os.replace(_copy(renewed.cert, first.cert.with_name("next.pem")), first.cert)
        time.sleep(1.5)  # three checks
        assert presented_serial(server.port) == first.serial
        assert "not reloaded, still serving the previous one" in server.output()
        replace_files(first, renewed)  # the key arrives: the pair is whole
        took = wait_for_serial(server.port, renewed.serial)
        assert server.proc.poll() is None and server.proc.pid == pid, "the server restarted"
        # Verified against the new certificate: the whole chain changed, not just the serial.
        with urllib.request.urlopen(f"{server.url}/livez", context=client_context(renewed), timeout=10) as resp:
            assert resp.status == 200
        assert "TLS certificate reloaded" in server.output()
        assert took < RELOAD_BOUND_S


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_sighup_reloads_the_certificate_at_once(tmp_path: Path) -> None:
    first = make_certificate(tmp_path / "tls")
    with Served(tmp_path, *tls_args(first), tls=True, env={"OPENVISIT_TLS_RELOAD_SECONDS": "3600"}) as server:
        assert server.proc is not None
        renewed = make_certificate(tmp_path / "renewed")
        replace_files(first, renewed)
        time.sleep(0.5)
        assert presented_serial(server.port) == first.serial  # the hourly check has not run
        server.proc.send_signal(signal.SIGHUP)
        wait_for_serial(server.port, renewed.serial, within=5)
        assert server.proc.poll() is None


def test_sighup_without_a_certificate_does_not_stop_the_server(tmp_path: Path) -> None:
    """Behind a proxy (plain HTTP here) a service manager's reload must not end the process
    (SIGHUP's default action), which systemd would not restart after a clean exit."""
    with Served(tmp_path) as server:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert server.proc.poll() is None
        with urllib.request.urlopen(f"{server.url}/livez", timeout=5) as resp:
            assert resp.status == 200
        assert "SIGHUP: nothing to reload" in server.output()


def run_openvisit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env.update({"OPENVISIT_MODE": "test", "OPENVISIT_DATA_DIR": str(tmp_path / "data")})
    return subprocess.run([PYTHON, "-m", "openvisit.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=90, check=False)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("openvisit: cannot serve HTTPS: "), lines[0]
    return lines[0]


def test_unusable_certificate_files_stop_the_command_with_one_line(tmp_path: Path) -> None:
    good = make_certificate(tmp_path / "good")
    other = make_certificate(tmp_path / "other")
    missing = tmp_path / "nowhere" / "cert.pem"
    line = one_line(run_openvisit(tmp_path, "serve", "--tls-cert", str(missing), "--tls-key", str(good.key)))
    assert str(missing) in line and "does not exist" in line and "--tls-cert" in line
    line = one_line(run_openvisit(tmp_path, "serve", "--tls-cert", str(good.cert), "--tls-key", str(other.key)))
    assert "does not belong to the certificate" in line and str(other.key) in line
    line = one_line(run_openvisit(tmp_path, "serve", "--tls-cert", str(good.key), "--tls-key", str(good.key)))
    assert "holds no PEM certificate" in line
    assert not (tmp_path / "data" / "openvisit.sqlite3").exists(), "migrated before the certificate was checked"
    # The media node checks its files before it contacts the control API.
    line = one_line(run_openvisit(tmp_path, "sfu", "--control-url", "http://127.0.0.1:9", "--tls-cert",
                                  str(missing), "--tls-key", str(good.key)))
    assert "does not exist" in line
    half = run_openvisit(tmp_path, "serve", "--tls-cert", str(good.cert))
    assert half.returncode == 2 and "tls_cert_file and tls_key_file go together" in half.stderr
