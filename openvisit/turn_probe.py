"""Talking to a TURN relay as a client does (issue 14): `openvisit doctor` and the API's readiness
check use it to prove that the relay answers and accepts the credentials the API mints, with a
real Allocate (RFC 8656) through aioice, the ICE library aiortc itself uses."""

from __future__ import annotations

import asyncio
import re
import ssl

_TURN_URL = re.compile(r"(?P<scheme>turns?):(?P<host>\[[^\]]+\]|[^:?]+)(?::(?P<port>\d+))?"
                       r"(?:\?transport=(?P<transport>udp|tcp))?")


def turn_server(url: str) -> tuple[str, int, str, bool]:
    """(host, port, transport, tls) of a turn:/turns: URL (RFC 7065)."""
    match = _TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(f"not a TURN URL: {url}")
    tls = match["scheme"] == "turns"
    transport = match["transport"] or ("tcp" if tls else "udp")
    return match["host"].strip("[]"), int(match["port"] or (443 if tls else 3478)), transport, tls


async def allocate(url: str, username: str, password: str) -> str:
    """A TURN Allocate with these credentials: the relayed address on success; raises otherwise."""
    import aioice.turn

    host, port, transport, tls = turn_server(url)
    context: ssl.SSLContext | None = None
    if tls:
        context = ssl.create_default_context()
    turn_transport, _ = await aioice.turn.create_turn_endpoint(
        asyncio.DatagramProtocol, server_addr=(host, port), username=username, password=password,
        lifetime=60, ssl=context, transport=transport)
    try:
        relayed = turn_transport.get_extra_info("sockname")
        return f"{relayed[0]}:{relayed[1]}"
    finally:
        turn_transport.close()
