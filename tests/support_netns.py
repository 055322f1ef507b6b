"""Real networks for tests that need NATs and firewalls (issue 14: TURN), built from Linux network
namespaces, veth pairs, a bridge and nftables rules, and removed again whatever happens.

    lab = NetLab()                          # unique names for this run: ov<6 hex>...
    public = lab.public_segment()           # a bridge in the root namespace: the "internet" side
    site = lab.nat_site("u", public, FirewallPolicy.UDP_BLOCKED)
    lab.run(["python", ...], ns=site.client_ns)
    lab.close()                             # namespaces, links, rules: gone (a fixture finalizer)

Topology of one site: client namespace (private /24, default route via the NAT) -- veth --
NAT namespace (forwarding, nftables masquerade + filter) -- veth -- the public bridge in the
root namespace, which holds the servers' addresses. The root namespace has no route to a
site's private network, so nothing public reaches a client except through its NAT.

Needs root, iproute2 (`ip netns`) and nftables; `unavailable()` says what is missing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum


class FirewallPolicy(Enum):
    # Masquerading NAT that drops every outbound UDP packet (many workplace and guest networks).
    UDP_BLOCKED = "udp-blocked"
    # Symmetric NAT (a fresh random source port per destination: masquerade fully-random) whose
    # firewall lets UDP out only to one address, the relay's.
    SYMMETRIC_UDP_TO_RELAY_ONLY = "symmetric"


def unavailable() -> str | None:
    """Why namespaces cannot be built here (not root, no `ip netns`), or None."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"ovprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` does not work here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def missing_tools() -> str | None:
    """What else the tests need (installed by scripts/test.sh), or None."""
    if shutil.which("nft") is None:
        return "nftables (`nft`) is not installed: apt-get install nftables (scripts/test.sh does)"
    return None


class NetError(Exception):
    pass


@dataclass
class Segment:
    """The public side: a bridge in the root namespace and the addresses on it."""

    bridge: str
    network: ipaddress.IPv4Network
    next_host: int = 10

    def address(self, index: int) -> str:
        return str(self.network.network_address + index)


@dataclass
class Site:
    """A client network behind a NAT: `client_ns` reaches the segment only through `nat_ns`."""

    nat_ns: str
    client_ns: str
    client_address: str
    nat_public_address: str
    policy: FirewallPolicy


class NetLab:
    """Everything one test run builds; `close()` removes it in reverse order, ignoring what is gone."""

    def __init__(self) -> None:
        self.tag = f"ov{secrets.token_hex(3)}"
        self._undo: list[Callable[[], None]] = []
        self._taken: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    # ------------------------------------------------------------------ commands

    @staticmethod
    def run(argv: Sequence[str], *, ns: str | None = None, input: str | None = None,
            timeout: float = 15) -> subprocess.CompletedProcess[str]:
        full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
        done = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise NetError(f"{' '.join(full)}: exit {done.returncode}: {done.stderr.strip()}")
        return done

    def _later(self, *argv: str) -> None:
        def undo() -> None:
            subprocess.run(list(argv), capture_output=True, timeout=15, check=False)

        self._undo.append(undo)

    def close(self) -> None:
        while self._undo:
            with contextlib.suppress(Exception):
                self._undo.pop()()

    # ------------------------------------------------------------------ addressing

    def _subnet(self) -> ipaddress.IPv4Network:
        """A 10.x.y.0/24 no interface or route of this host (or this lab) uses."""
        used = list(self._taken)
        for line in self.run(["ip", "-4", "-o", "addr", "show"]).stdout.splitlines():
            with contextlib.suppress(ValueError, IndexError):
                used.append(ipaddress.ip_interface(line.split()[3]).network)
        for line in self.run(["ip", "-4", "route", "show", "table", "all"]).stdout.splitlines():
            word = line.split()[0] if line.split() else ""
            with contextlib.suppress(ValueError):
                if word not in ("default", "broadcast", "local", "unreachable"):
                    used.append(ipaddress.ip_network(word, strict=False))
        for _ in range(200):
            net = ipaddress.IPv4Network(f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24")
            if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
                self._taken.append(net)
                return net
        raise NetError("no free 10.x.y.0/24 for the test network")

    # ------------------------------------------------------------------ building

    def public_segment(self) -> Segment:
        bridge = f"{self.tag}br"
        net = self._subnet()
        self.run(["ip", "link", "add", bridge, "type", "bridge"])
        self._later("ip", "link", "del", bridge)
        self.run(["ip", "link", "set", bridge, "up"])
        return Segment(bridge, net)

    def add_public_address(self, segment: Segment, index: int) -> str:
        """Give the root namespace address `index` of the segment (a server listens on it)."""
        address = segment.address(index)
        self.run(["ip", "addr", "add", f"{address}/{segment.network.prefixlen}", "dev", segment.bridge])
        return address

    def _netns(self, name: str) -> str:
        self.run(["ip", "netns", "add", name])
        self._later("ip", "netns", "del", name)
        self.run(["ip", "link", "set", "lo", "up"], ns=name)
        return name

    def nat_site(self, name: str, segment: Segment, policy: FirewallPolicy, *, relay_address: str) -> Site:
        """A client behind a NAT of `policy` on `segment` (names: tag + `name`)."""
        nat, client = self._netns(f"{self.tag}-{name}nat"), self._netns(f"{self.tag}-{name}cli")
        wan_root, wan, lan, lan_client = (f"{self.tag}{name}w0", f"{self.tag}{name}w1", f"{self.tag}{name}l0",
                                          f"{self.tag}{name}l1")
        private = self._subnet()
        public_address = segment.address(segment.next_host)
        segment.next_host += 1
        self.run(["ip", "link", "add", wan_root, "type", "veth", "peer", "name", wan])
        self._later("ip", "link", "del", wan_root)
        self.run(["ip", "link", "set", wan_root, "master", segment.bridge, "up"])
        self.run(["ip", "link", "set", wan, "netns", nat])
        self.run(["ip", "link", "add", lan, "type", "veth", "peer", "name", lan_client])
        self._later("ip", "link", "del", lan)
        self.run(["ip", "link", "set", lan, "netns", nat])
        self.run(["ip", "link", "set", lan_client, "netns", client])
        gateway, client_address = str(private.network_address + 1), str(private.network_address + 2)
        self.run(["ip", "addr", "add", f"{public_address}/{segment.network.prefixlen}", "dev", wan], ns=nat)
        self.run(["ip", "link", "set", wan, "up"], ns=nat)
        self.run(["ip", "addr", "add", f"{gateway}/24", "dev", lan], ns=nat)
        self.run(["ip", "link", "set", lan, "up"], ns=nat)
        self.run(["ip", "route", "add", "default", "via", str(segment.network.network_address + 1)], ns=nat)
        self.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=nat)
        self.run(["ip", "addr", "add", f"{client_address}/24", "dev", lan_client], ns=client)
        self.run(["ip", "link", "set", lan_client, "up"], ns=client)
        self.run(["ip", "route", "add", "default", "via", gateway], ns=client)
        self.run(["nft", "-f", "-"], ns=nat, input=ruleset(policy, lan=lan, wan=wan, relay_address=relay_address))
        return Site(nat, client, client_address, public_address, policy)


def ruleset(policy: FirewallPolicy, *, lan: str, wan: str, relay_address: str) -> str:
    """The NAT namespace's nftables rules: masquerade out of `wan`, and the policy's UDP filter."""
    if policy is FirewallPolicy.UDP_BLOCKED:
        udp_rule = f'iifname "{lan}" meta l4proto udp counter drop'
        masquerade = f'oifname "{wan}" masquerade'
    else:
        udp_rule = f'iifname "{lan}" meta l4proto udp ip daddr != {relay_address} counter drop'
        masquerade = f'oifname "{wan}" masquerade fully-random'
    return f"""table ip natlab {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    {udp_rule}
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    {masquerade}
  }}
}}
"""
