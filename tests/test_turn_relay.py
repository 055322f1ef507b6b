"""The TURN relay for real (issue 14): participants behind NATs the test builds itself in network
namespaces (tests/support_netns.py) hold a visit with video both ways through Debian's coturn,
authenticated with the credential the control API minted for them (TURN REST API).

Public side (a bridge in the root namespace): `openvisit serve` (API, signaling and SFU, whose
ICE address is a public address of the bridge), coturn on another public address, configured as
docs/deploy.md says (use-auth-secret, private peer ranges denied, only the SFU allowed), and the
facility's kiosk. Each test puts the visitor behind its own NAT:

- a NAT that drops all outbound UDP: the visitor reaches the SFU only through TURN over TCP;
- a symmetric NAT (every destination gets a fresh random port: nftables `masquerade
  fully-random`) whose firewall lets UDP out only to the relay: the visitor connects through
  TURN over UDP. A symmetric NAT alone does not stop a client from reaching an SFU with a public
  address (the SFU learns its peer-reflexive candidate), so the firewall is what makes the relay
  necessary; the test shows the relay works across the symmetric mapping.

Each test first checks the network is what it claims (UDP really dropped, the mapping really
symmetric), then fails unless the visitor's nominated ICE pair is a relay candidate, the relay
logged the allocation under the visitor's own credential, and video went both ways.

Skipped (with the reason) without root or `ip netns`, except in CI (CI=true), where that, or a
missing coturn or nftables, fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aioice.stun
import aioice.turn
import pytest

from control_api.domain.turn_credentials import mint, turn_password
from tests.faults.processes import PYTHON, HttpServerProcess, ParticipantProcess, ProcessSet, ServerEnv
from tests.faults.world import VISIT_MINUTES, Caller, World, build_world
from tests.support_netns import FirewallPolicy, NetLab, Segment, Site, missing_tools, unavailable

pytestmark = pytest.mark.slow

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
TURN_PORT = 3478  # on the relay's own test address; another port if something holds 3478 on every address
TURN_TLS_PORT = 443  # likewise: TURN over TLS where web traffic goes, as docs/deploy.md configures it
SECRET = secrets.token_urlsafe(24)
REALM = "openvisit.test"
MIN_VIDEO_FRAMES = 30  # a second of video each way at least


def _require_lab() -> None:
    reason = unavailable()
    if reason is None:
        reason = missing_tools()
        if reason is None and not Path(TURNSERVER).exists():
            reason = "coturn is not installed: apt-get install coturn (scripts/test.sh does)"
        if reason is not None:
            pytest.fail(reason)  # root with namespaces: the tools are expected (scripts/test.sh installs them)
    if reason is not None:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


# ---------------------------------------------------------------------------- the public side


class Coturn:
    """Debian's coturn on `address`, configured as docs/deploy.md describes, logging to a file."""

    def __init__(self, address: str, sfu_address: str, workdir: Path) -> None:
        self.address = address
        self.port = _turn_port(address, TURN_PORT)
        self.tls_port = _turn_port(address, TURN_TLS_PORT)
        relay_ports = random.randrange(40000, 48000, 100)
        self.ca_file, key_file = workdir / "turn-cert.pem", workdir / "turn-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key_file), "-out", str(self.ca_file), "-days", "1",
                        "-subj", "/CN=turn.openvisit.test", "-addext", f"subjectAltName=IP:{address}"],
                       capture_output=True, check=True, timeout=30)
        self.log = workdir / "turnserver.log"
        config = workdir / "turnserver.conf"
        config.write_text(f"""# as in docs/deploy.md (TURN), with this test's addresses
listening-ip={address}
relay-ip={address}
listening-port={self.port}
tls-listening-port={self.tls_port}
cert={self.ca_file}
pkey={key_file}
min-port={relay_ports}
max-port={relay_ports + 99}
fingerprint
use-auth-secret
static-auth-secret={SECRET}
realm={REALM}
no-dtls
no-cli
no-multicast-peers
denied-peer-ip=0.0.0.0-0.255.255.255
denied-peer-ip=10.0.0.0-10.255.255.255
denied-peer-ip=100.64.0.0-100.127.255.255
denied-peer-ip=127.0.0.0-127.255.255.255
denied-peer-ip=169.254.0.0-169.254.255.255
denied-peer-ip=172.16.0.0-172.31.255.255
denied-peer-ip=192.168.0.0-192.168.255.255
allowed-peer-ip={sfu_address}
verbose
log-file={self.log}
simple-log
pidfile={workdir / "turnserver.pid"}
""")
        self.proc = subprocess.Popen([TURNSERVER, "-c", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"turnserver exited with {self.proc.returncode}:\n{self.output()}")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((address, self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"turnserver did not listen on {address}:{self.port}:\n{self.output()}")

    @property
    def urls(self) -> list[str]:
        return [f"turn:{self.address}:{self.port}?transport=udp", f"turn:{self.address}:{self.port}?transport=tcp",
                f"turns:{self.address}:{self.tls_port}?transport=tcp"]

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class PublicServer(HttpServerProcess):
    """`openvisit serve` listening on a public address of the test network, not on loopback."""

    def __init__(self, address: str, port: int, env: ServerEnv, log_dir: Path) -> None:
        argv = [PYTHON, "-m", "openvisit.cli", "serve", "--host", address, "--port", str(port)]
        super().__init__("serve", argv, env.environ(), log_dir, port, "/v1/media/public-key")
        self.address = address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


@dataclass
class Relayed:
    lab: NetLab
    segment: Segment
    sfu_address: str
    kiosk_address: str
    turn: Coturn
    server: PublicServer
    world: World
    procs: ProcessSet
    log_dir: Path
    next_pair: int = 0


def _turn_port(address: str, port: int) -> int:
    """`port` if its TCP and UDP are free on `address` (a system coturn may hold them), else a free port."""
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((address, port))
        return port
    except OSError:
        return _free_port(address)


def _free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relayed]:
    """The public side, shared by the module's tests; every namespace, link, process: removed."""
    _require_lab()
    root = tmp_path_factory.mktemp("turn")
    log_dir = root / "logs"
    log_dir.mkdir()
    lab = NetLab()
    procs = ProcessSet(log_dir)
    turn: Coturn | None = None
    try:
        segment = lab.public_segment()
        sfu_address = lab.add_public_address(segment, 1)
        relay_address = lab.add_public_address(segment, 2)
        kiosk_address = lab.add_public_address(segment, 3)
        turn = Coturn(relay_address, sfu_address, root)
        env = ServerEnv.create(root, OPENVISIT_MEDIA_ADDRESSES=json.dumps([sfu_address]),
                               OPENVISIT_TURN_URLS=json.dumps(turn.urls), OPENVISIT_TURN_SECRET=SECRET)
        server = PublicServer(sfu_address, _free_port(sfu_address), env, log_dir)
        procs.processes.append(server)
        server.start()
        world = build_world(server.url, env, pairs=3)
        yield Relayed(lab, segment, sfu_address, kiosk_address, turn, server, world, procs, log_dir)
    finally:
        procs.close()
        if turn is not None:
            turn.close()
        lab.close()


@dataclass
class Booked:
    id: str
    visitor: Caller
    kiosk: Caller


def _book_started(r: Relayed) -> Booked:
    """A 5-minute social visit for the next visitor/resident pair, started and checked in."""
    w, i = r.world, r.next_pair
    r.next_pair += 1
    start = (w.now() + timedelta(seconds=20)).replace(microsecond=0) + timedelta(seconds=1)
    got = w.visitors[i].post("/v1/visits", {
        "resident_id": w.residents[i], "starts_at": start.isoformat(), "length_minutes": VISIT_MINUTES,
        "visit_type": "social", "payment": {"card_token": "tok_visa", "use_credit": False}},
        headers={"Idempotency-Key": secrets.token_hex(12)})
    w.advance_to(start + timedelta(seconds=1))
    kiosk = w.kiosks[i]
    kiosk.post(f"/v1/visits/{got['id']}/check-in")
    return Booked(got["id"], w.visitors[i], kiosk)


# ---------------------------------------------------------------------------- checking the network


PROBE_LISTEN = """
import json, socket, sys, time
socks = []
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(port))); s.settimeout(0.2)
    socks.append(s)
print("ready", flush=True)
seen, deadline = [], time.monotonic() + 3
while time.monotonic() < deadline:
    for s in socks:
        try:
            data, addr = s.recvfrom(100)
            seen.append([s.getsockname()[1], addr[0], addr[1]])
        except TimeoutError:
            pass
print(json.dumps(seen), flush=True)
"""

PROBE_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5):
    for port in sys.argv[2:]:
        s.sendto(b"probe", (sys.argv[1], int(port)))
    time.sleep(0.05)
"""


def udp_probe(r: Relayed, site: Site, address: str) -> list[tuple[int, str, int]]:
    """From one client socket, UDP to two ports of `address`: what arrived, as (port, source, source port)."""
    ports = [str(_free_udp_port(address)), str(_free_udp_port(address))]
    listener = subprocess.Popen([PYTHON, "-c", PROBE_LISTEN, address, *ports], stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        r.lab.run([PYTHON, "-c", PROBE_SEND, address, *ports], ns=site.client_ns)
        out, _ = listener.communicate(timeout=10)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return [(int(p), src, int(sport)) for p, src, sport in json.loads(out.strip().splitlines()[-1])]


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def tcp_reaches(r: Relayed, site: Site, address: str, port: int) -> bool:
    code = f"import socket; socket.create_connection(({address!r}, {port}), 3).close()"
    try:
        r.lab.run([PYTHON, "-c", code], ns=site.client_ns)
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------- the visit


def _client(r: Relayed, name: str, caller: Caller, visit_id: str, *, address: str, turn: str,
            ns: str | None = None) -> ParticipantProcess:
    argv = [PYTHON, "-m", "tests.turn_client", "--api", r.server.url, "--token", str(caller.token), "--visit",
            visit_id, "--address", address, "--turn", turn, "--hold", "3", "--max-seconds", "40"]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns, *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENVISIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["SSL_CERT_FILE"] = str(r.turn.ca_file)  # the relay's test certificate is the only one trusted
    proc = ParticipantProcess(name, argv, env, r.log_dir)
    r.procs.processes.append(proc)
    proc.start()
    return proc


def _wait_exit(*clients: ParticipantProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for c in clients:
        c.wait(max(0.1, deadline - time.monotonic()))


def _failure(r: Relayed, *clients: ParticipantProcess) -> str:
    parts = [f"===== {c.name}\n{c.output(4000)}" for c in clients]
    parts.append(f"===== serve\n{r.server.output(4000)}")
    parts.append(f"===== turnserver (tail)\n{r.turn.output()[-4000:]}")
    return "\n".join(parts)


def hold_visit(r: Relayed, site: Site, turn: str) -> tuple[dict[str, Any], int, int, str]:
    """The visitor (behind `site`, TURN over `turn`) and the kiosk (public side, no relay) join
    one visit; returns the visitor's nominated pair, video frames each received, and the
    visitor's TURN username."""
    visit = _book_started(r)
    visitor = _client(r, f"visitor-{turn}-{site.policy.value}", visit.visitor, visit.id, address=site.client_address,
                      turn=turn, ns=site.client_ns)
    kiosk = _client(r, f"kiosk-{turn}-{site.policy.value}", visit.kiosk, visit.id, address=r.kiosk_address, turn="none")
    _wait_exit(visitor, kiosk, timeout=45)
    for c in (visitor, kiosk):
        c.cleanup()
    pair = visitor.events("pair_at_end") or visitor.events("pair")
    servers = visitor.events("ice_servers")
    if not pair or not servers:
        pytest.fail("the visitor never connected:\n" + _failure(r, visitor, kiosk))
    usernames = [s["username"] for s in servers[0]["servers"] if s.get("username")]
    assert len(usernames) == 1, servers
    return pair[-1], visitor.frames("video"), kiosk.frames("video"), usernames[0]


def assert_relayed(r: Relayed, pair: dict[str, Any], username: str, visitor_id: str, protocol: str) -> None:
    log = r.turn.output()
    assert pair["local_type"] == "relay", f"the visitor's nominated pair is not relayed: {pair}"
    assert pair["local"][0] == r.turn.address, pair
    assert pair["remote"] == [r.sfu_address, pair["remote"][1]], f"the relay's peer is not the SFU: {pair}"
    assert pair["relay_protocol"] == protocol, pair
    assert username.endswith(f":{visitor_id}"), username
    # coturn's own account: the visitor's credential was accepted, and the relay carried data
    # to the SFU's address (a channel or permission for it).
    assert f"user <{username}>: incoming packet ALLOCATE processed, success" in log, log[-3000:]
    assert f"user <{username}>: incoming packet CHANNEL_BIND processed, success" in log or (
        f"user <{username}>: incoming packet CREATE_PERMISSION processed, success" in log), log[-3000:]


# ---------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("turn", ["tcp", "tls"])
def test_behind_a_nat_that_drops_all_udp_the_visit_runs_over_turn_tcp(relayed: Relayed, turn: str) -> None:
    """TURN over TCP on 3478, and over TLS on 443 (turns:, the relay's certificate verified)."""
    r = relayed
    site = r.lab.nat_site(turn[:2], r.segment, FirewallPolicy.UDP_BLOCKED, relay_address=r.turn.address)
    assert udp_probe(r, site, r.sfu_address) == [], "the NAT lets UDP out: the test would prove nothing"
    port = r.turn.port if turn == "tcp" else r.turn.tls_port
    assert tcp_reaches(r, site, r.turn.address, port), "the relay's TCP port is unreachable from the client"
    t0 = time.monotonic()
    pair, visitor_video, kiosk_video, username = hold_visit(r, site, turn)
    assert_relayed(r, pair, username, r.world.visitors[r.next_pair - 1].id, "TurnClientTcpProtocol")
    assert pair["relay_tls"] is (turn == "tls"), pair
    assert visitor_video >= MIN_VIDEO_FRAMES and kiosk_video >= MIN_VIDEO_FRAMES, (visitor_video, kiosk_video)
    print(f"\nUDP blocked: relayed over {turn.upper()}, video frames visitor {visitor_video} / kiosk {kiosk_video}, "
          f"{time.monotonic() - t0:.1f} s")


def test_behind_a_symmetric_nat_the_visit_runs_through_the_relay(relayed: Relayed) -> None:
    r = relayed
    site = r.lab.nat_site("s", r.segment, FirewallPolicy.SYMMETRIC_UDP_TO_RELAY_ONLY, relay_address=r.turn.address)
    seen = udp_probe(r, site, r.turn.address)
    by_port = {port: (src, sport) for port, src, sport in seen}
    assert len(by_port) == 2, f"UDP to the relay's address should pass the NAT: {seen}"
    assert {src for src, _ in by_port.values()} == {site.nat_public_address}, seen
    assert len({sport for _, sport in by_port.values()}) == 2, f"the NAT is not symmetric: {seen}"
    assert udp_probe(r, site, r.sfu_address) == [], "UDP to the SFU should not leave this network"
    t0 = time.monotonic()
    pair, visitor_video, kiosk_video, username = hold_visit(r, site, "udp")
    assert_relayed(r, pair, username, r.world.visitors[r.next_pair - 1].id, "TurnClientUdpProtocol")
    assert visitor_video >= MIN_VIDEO_FRAMES and kiosk_video >= MIN_VIDEO_FRAMES, (visitor_video, kiosk_video)
    print(f"\nsymmetric NAT: relayed over UDP, video frames visitor {visitor_video} / kiosk {kiosk_video}, "
          f"{time.monotonic() - t0:.1f} s")


def test_the_relay_refuses_a_forged_or_expired_credential(relayed: Relayed) -> None:
    """coturn and the control API agree on the scheme: the minted credential allocates; under
    another participant's name, after its expiry or with another secret it does not."""
    r = relayed
    now = datetime.now(UTC)
    good = mint(SECRET, "visitor-check", now + timedelta(minutes=5))
    expired = mint(SECRET, "visitor-check", now - timedelta(minutes=1))
    forged_user = good.username.replace("visitor-check", "someone-else")

    async def allocates(user: str, password: str, transport: str) -> bool:
        try:
            relay, _ = await asyncio.wait_for(aioice.turn.create_turn_endpoint(
                asyncio.DatagramProtocol, server_addr=(r.turn.address, r.turn.port), username=user, password=password,
                transport=transport), 10)
        except aioice.stun.TransactionFailed:
            return False
        relay.close()
        return True

    async def check() -> list[bool]:
        return [await allocates(good.username, good.credential, "udp"),
                await allocates(good.username, good.credential, "tcp"),
                await allocates(forged_user, good.credential, "udp"),
                await allocates(expired.username, expired.credential, "udp"),
                await allocates(good.username, turn_password("another-secret", good.username), "tcp")]

    assert asyncio.run(check()) == [True, True, False, False, False]
