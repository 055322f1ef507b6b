"""Behind a reverse proxy (issue 14): the client's address and scheme, believed only from proxies we trust.

A proxy (Caddy, nginx) connects to us itself, so the socket's peer is the proxy; it passes the
client's address and whether the client used HTTPS in `Forwarded` (RFC 7239) or
`X-Forwarded-For` / `X-Forwarded-Proto`. Anyone can send those headers, so they are read only
when the socket's peer is in the `trusted_proxies` setting; from any other peer they are ignored
and the peer is the client. Otherwise a caller could claim a new address per request and escape
the per-address sign-in throttle, or write someone else's address into the audit log.

Each proxy appends the address it received the request from, so the list is read from the right:
addresses of trusted proxies are skipped and the first untrusted one is the client (what lies
left of it was written by the client and is not believed). The request is cloned with that
`remote` and `scheme`, so everything downstream (sign-in throttle, sessions, refused-attempt audit,
HSTS, the `wss://` signaling URL) sees the client as it is, not as the proxy.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDictProxy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_FORWARDED_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')
SCHEMES = frozenset({"http", "https"})


def parse_address(value: str) -> Address | None:
    """An address from a forwarded header: `203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711`
    or `2001:db8::1`; None for `unknown`, obfuscated names (`_hidden`) and anything else."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Hop:
    """One element of the chain: the address a proxy saw (None: unparseable) and, if given, the
    scheme that hop used."""

    address: Address | None
    proto: str | None = None


def forwarded_hops(header: str) -> list[Hop]:
    """The `Forwarded` header's elements, left (client side) to right (our side)."""
    hops = []
    for element in header.split(","):
        fields: dict[str, str] = {}
        for pair in element.split(";"):
            match = _FORWARDED_PAIR.fullmatch(pair)
            if match:
                fields[match.group(1).lower()] = match.group(2).strip('"')
        proto = fields.get("proto", "").lower() or None
        hops.append(Hop(parse_address(fields["for"]) if "for" in fields else None, proto))
    return hops


def x_forwarded_hops(for_header: str, proto_header: str | None) -> list[Hop]:
    """`X-Forwarded-For` (and `X-Forwarded-Proto`, one value or one per address) as hops."""
    addresses = [parse_address(part) for part in for_header.split(",")]
    protos = [p.strip().lower() for p in proto_header.split(",")] if proto_header else []
    if len(protos) == len(addresses):
        return [Hop(a, p or None) for a, p in zip(addresses, protos, strict=True)]
    first = protos[0] if protos else None  # one value: the scheme the client used at the edge
    return [Hop(a, first) for a in addresses]


class TrustedProxies:
    """The `trusted_proxies` setting: addresses and networks whose forwarded headers we believe."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | str | None) -> bool:
        if isinstance(address, str):
            address = parse_address(address)
        return address is not None and any(address in network for network in self.networks)

    def resolve(self, peer: str | None, headers: CIMultiDictProxy[str]) -> tuple[str | None, str | None]:
        """(client address, scheme) for a request from `peer`; (peer, None) when `peer` is not a
        trusted proxy or it forwarded nothing. The scheme is None when no hop named a usable one."""
        if not self.trusts(peer):
            return peer, None
        if "Forwarded" in headers:
            hops = forwarded_hops(", ".join(headers.getall("Forwarded")))
        elif "X-Forwarded-For" in headers:
            hops = x_forwarded_hops(", ".join(headers.getall("X-Forwarded-For")),
                                    headers.get("X-Forwarded-Proto"))
        elif "X-Forwarded-Proto" in headers:  # a proxy that forwards the scheme only
            only = headers["X-Forwarded-Proto"].split(",")[0].strip().lower()
            return peer, only if only in SCHEMES else None
        else:
            return peer, None
        client: str | None = peer
        proto: str | None = None
        for hop in reversed(hops):
            if hop.proto in SCHEMES:
                proto = hop.proto
            if hop.address is None:
                break  # garbage where an address belongs: the last proxy that wrote a real one is all we know
            client = str(hop.address)
            if not self.trusts(hop.address):
                break
        return client, proto


def forwarded_middleware(trusted: TrustedProxies) -> Middleware:
    """The outermost middleware: the request, as the client sent it, for every later step."""

    @web.middleware
    async def forwarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not trusted:
            return await handler(request)
        client, scheme = trusted.resolve(request.remote, request.headers)
        if client == request.remote and scheme in (None, request.scheme):
            return await handler(request)
        remote = client if client is not None else request.remote
        return await handler(request.clone(remote=remote or "", scheme=scheme or request.scheme))

    return forwarded
