"""`openvisit doctor` (issue 14) against real parts: the real command in a subprocess, a real
coturn relay on loopback with its own static-auth-secret, a real SQLite database migrated by the
real `openvisit migrate`, certificates made here, a real SMTP server. A ready configuration exits
0; a broken one exits 1 and names every broken thing with its fix."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from openvisit.turn_probe import turn_server
from tests.faults.processes import PYTHON, ROOT
from tests.support_serve import free_port, make_certificate

pytestmark = pytest.mark.slow
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
IN_CI = os.environ.get("CI") == "true"


class Relay:
    """coturn on 127.0.0.1 with the TURN REST API scheme (use-auth-secret), as docs/deploy.md sets it up."""

    def __init__(self, folder: Path, secret: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        relay_ports = 20000 + secrets.randbelow(20000)
        config = folder / "turnserver.conf"
        config.write_text(f"""listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={self.port}
min-port={relay_ports}
max-port={relay_ports + 49}
fingerprint
use-auth-secret
static-auth-secret={secret}
realm=doctor.openvisit.test
no-tls
no-dtls
no-cli
no-multicast-peers
log-file={folder / "turn.log"}
simple-log
pidfile={folder / "turn.pid"}
""")
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "turnserver exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("turnserver did not listen within 10 s")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def relay_secret() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def relay(tmp_path: Path, relay_secret: str) -> Iterator[Relay]:
    if not Path(TURNSERVER).exists():
        if IN_CI:
            pytest.fail("coturn is not installed (scripts/test.sh installs it)")
        pytest.skip("coturn is not installed: apt-get install coturn")
    relay = Relay(tmp_path / "relay", relay_secret)
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(object(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def expired_certificate(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=90))
            .not_valid_after(now - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "cert.pem", folder / "key.pem"


def toml(values: dict[str, Any]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def openvisit(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    return subprocess.run([PYTHON, "-m", "openvisit.cli", "--config", str(config), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=90, check=False)


def findings(result: subprocess.CompletedProcess[str]) -> dict[str, list[dict[str, str]]]:
    assert "Traceback" not in result.stderr, result.stderr
    out: dict[str, list[dict[str, str]]] = {}
    for finding in json.loads(result.stdout)["findings"]:
        out.setdefault(finding["check"], []).append(finding)
    return out


def test_turn_urls_are_read_as_the_relay_reads_them() -> None:
    assert turn_server("turn:turn.example.org:3478?transport=udp") == ("turn.example.org", 3478, "udp", False)
    assert turn_server("turn:turn.example.org?transport=tcp") == ("turn.example.org", 3478, "tcp", False)
    assert turn_server("turns:turn.example.org:443?transport=tcp") == ("turn.example.org", 443, "tcp", True)
    assert turn_server("turns:turn.example.org") == ("turn.example.org", 443, "tcp", True)
    assert turn_server("turn:[2001:db8::1]:3478") == ("2001:db8::1", 3478, "udp", False)
    with pytest.raises(ValueError):
        turn_server("stun:stun.example.org")


def test_a_ready_configuration_passes_every_check(tmp_path: Path, relay: Relay, relay_secret: str,
                                                   smtp: int) -> None:
    cert = make_certificate(tmp_path / "tls", days=90)
    first = 41000 + secrets.randbelow(20000)
    config = tmp_path / "openvisit.toml"
    config.write_text(toml({
        "mode": "production", "data_dir": str(tmp_path / "data"), "public_url": "https://localhost:8443",
        "tls_cert_file": str(cert.cert), "tls_key_file": str(cert.key),
        "media_addresses": ["127.0.0.1"], "media_udp_ports": f"{first}-{first + 9}",
        "turn_urls": [f"turn:127.0.0.1:{relay.port}?transport=udp", f"turn:127.0.0.1:{relay.port}?transport=tcp"],
        "turn_secret": relay_secret, "smtp_host": "127.0.0.1", "smtp_port": smtp,
    }))
    migrated = openvisit(config, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    started = time.monotonic()
    result = openvisit(config, "doctor", "--json")
    took = time.monotonic() - started
    found = findings(result)
    failures = [f for items in found.values() for f in items if f["level"] == "fail"]
    assert result.returncode == 0 and failures == [], (failures, result.stderr)
    assert found["certificate"][0]["level"] == "ok" and "valid for 9" in found["certificate"][0]["detail"]
    assert found["database"][0]["level"] == "ok" and "schema at" in found["database"][0]["detail"]
    assert [f["level"] for f in found["turn"]] == ["ok", "ok"]  # credentials accepted over UDP and TCP
    assert all("credentials accepted, relay address 127.0.0.1:" in f["detail"] for f in found["turn"])
    assert found["media address seen"][0]["level"] == "ok"  # the relay, as a STUN server, sees 127.0.0.1
    assert found["media address"][0]["level"] == "ok" and f"{first}-{first + 9}" in found["media address"][0]["detail"]
    assert found["recordings folder"][0]["level"] == "ok" and found["mail"][0]["level"] == "ok"
    assert found["database engine"][0]["level"] == "warn"  # SQLite in production: said, not fatal
    # The same in words, for a person.
    text = openvisit(config, "doctor")
    assert text.returncode == 0 and text.stdout.rstrip().splitlines()[-1].startswith("ready for visits"), text.stdout
    print(f"doctor on a ready configuration: {took:.2f} s, {sum(len(v) for v in found.values())} findings")


def test_a_broken_configuration_names_each_problem_and_its_fix(tmp_path: Path, relay: Relay, relay_secret: str) -> None:
    cert_file, key_file = expired_certificate(tmp_path / "old-tls")
    data = tmp_path / "data"
    data.mkdir()
    (data / "openvisit.sqlite3").touch()  # a database nobody migrated
    (data / "recordings").write_text("a file where the recordings folder should be")
    config = tmp_path / "broken.toml"
    config.write_text(toml({
        "mode": "production", "data_dir": str(data),
        "database_url": f"sqlite+aiosqlite:///{data / 'openvisit.sqlite3'}",
        "public_url": "http://visits.example.org", "tls_cert_file": str(cert_file), "tls_key_file": str(key_file),
        "media_addresses": ["192.0.2.10"],  # TEST-NET: not an address of this machine
        "turn_urls": [f"turn:127.0.0.1:{relay.port}?transport=udp"], "turn_secret": relay_secret + "-not-the-relays",
    }))
    started = time.monotonic()
    result = openvisit(config, "doctor", "--json")
    took = time.monotonic() - started
    assert result.returncode == 1, (result.stdout, result.stderr)
    found = findings(result)
    failed = {check: items[0] for check, items in found.items() if items[0]["level"] == "fail"}
    assert set(failed) >= {"public url", "certificate", "certificate name", "database", "recordings folder",
                           "media address", "turn"}, sorted(failed)
    assert "expired on" in failed["certificate"]["detail"] and "renew" in failed["certificate"]["fix"]
    assert "visits.example.org" in failed["certificate name"]["detail"]
    assert "camera" in failed["public url"]["detail"]
    assert "openvisit migrate" in failed["database"]["fix"] and "no schema" in failed["database"]["detail"]
    assert "not a folder" in failed["recordings folder"]["detail"]
    assert "192.0.2.10" in failed["media address"]["detail"]
    assert "refused the minted credentials (401)" in failed["turn"]["detail"]
    assert "static-auth-secret" in failed["turn"]["fix"]
    text = openvisit(config, "doctor")
    assert text.returncode == 1 and "NOT ready for visits" in text.stdout
    assert text.stdout.count("fix: ") >= len(failed)
    print(f"doctor on a broken configuration: {took:.2f} s, {len(failed)} failures named")


@pytest.mark.parametrize("right_secret", [True, False])
def test_readiness_reports_the_relay_without_taking_the_api_out(tmp_path: Path, relay: Relay, relay_secret: str,
                                                                right_secret: bool) -> None:
    """`/readyz` allocates on the relay with minted credentials; a relay that refuses them makes
    the API `degraded` (named, still 200): visitors who need no relay can still hold visits."""
    from tests.support_serve import Served

    secret = relay_secret if right_secret else relay_secret + "-wrong"
    env = {"OPENVISIT_TURN_URLS": json.dumps([f"turn:127.0.0.1:{relay.port}?transport=udp",
                                              f"turn:127.0.0.1:{relay.port}?transport=tcp"]),
           "OPENVISIT_TURN_SECRET": secret}
    with Served(tmp_path / "serve", env=env) as server:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{server.url}/readyz", timeout=10) as resp:
                    status, body = resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                status, body = exc.code, json.loads(exc.read())
            if body["checks"].get("turn", {}).get("ok") is right_secret or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert status == 200, body  # the relay never takes the API out of the load balancer
    if right_secret:
        assert body["status"] == "ready" and body["degraded"] == [], body
        assert "accepts minted credentials on all 2" in body["checks"]["turn"]["detail"]
    else:
        assert body["status"] == "degraded" and body["degraded"] == ["turn"] and body["missing"] == [], body
        assert "#1 (credentials refused), #2 (credentials refused)" in body["checks"]["turn"]["detail"]
        assert str(relay.port) not in json.dumps(body)  # no addresses in an unauthenticated answer


def test_an_unmigrated_postgresql_database_is_told_to_migrate(tmp_path: Path) -> None:
    """Not 'cannot connect': the database answers, its schema is missing (the clock is read first,
    as a failed query ends a PostgreSQL transaction)."""
    from tests.conftest import PG_ADMIN_URL

    name = f"openvisit_doctor_{secrets.token_hex(5)}"
    admin = PG_ADMIN_URL.replace("+asyncpg", "")
    created = subprocess.run(["psql", admin, "-c", f'CREATE DATABASE "{name}"'], capture_output=True, text=True,
                             check=False)
    if created.returncode != 0:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not available: {created.stderr}")
        pytest.skip(f"PostgreSQL is not available: {created.stderr}")
    try:
        config = tmp_path / "pg.toml"
        config.write_text(toml({"mode": "test", "data_dir": str(tmp_path / "data"),
                                "database_url": PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"}))
        found = findings(openvisit(config, "doctor", "--json"))
        [database] = found["database"]
        assert database["level"] == "fail" and "postgresql reachable, schema at no schema" in database["detail"]
        assert "openvisit migrate" in database["fix"]
        assert found["database clock"][0]["level"] in ("ok", "warn")
    finally:
        subprocess.run(["psql", admin, "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], capture_output=True,
                       check=False)
