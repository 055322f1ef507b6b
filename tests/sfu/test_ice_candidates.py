"""Trickle ICE (sfu/room/ice_candidates.py): a client's candidate is checked before aioice sees
it; a malformed one is refused with ValueError (the signaling server answers it), "" ends them."""

from __future__ import annotations

from typing import Any

import pytest

from sfu.room.ice_candidates import add_ice_candidate, parse_candidate

HOST = "candidate:842163049 1 udp 1677729535 192.0.2.7 50000 typ host generation 0 ufrag x network-cost 999"
SRFLX = "candidate:1 1 udp 1686052607 203.0.113.9 61000 typ srflx raddr 10.0.0.2 rport 61000"


def test_a_candidate_is_parsed_for_the_m_line_it_names() -> None:
    host = parse_candidate(HOST, "0", None)
    assert (host.foundation, host.component, host.protocol, host.priority) == ("842163049", 1, "udp", 1677729535)
    assert (host.ip, host.port, host.type, host.sdpMid, host.sdpMLineIndex) == ("192.0.2.7", 50000, "host", "0", None)
    srflx = parse_candidate(SRFLX.removeprefix("candidate:"), None, 1)
    assert (srflx.type, srflx.relatedAddress, srflx.relatedPort, srflx.sdpMLineIndex) == ("srflx", "10.0.0.2", 61000, 1)


@pytest.mark.parametrize("candidate", [
    "candidate:1 1 udp 1 192.0.2.7 50000 host",  # no typ
    "candidate:1 one udp 1 192.0.2.7 50000 typ host",  # component not a number
    "candidate:1 1 udp high 192.0.2.7 50000 typ host",  # priority not a number
    "candidate:1 1 udp 1 192.0.2.7 port typ host",  # port not a number
    "candidate:1 1 udp",  # cut short
    "<script>",
])
def test_a_malformed_candidate_is_refused(candidate: str) -> None:
    with pytest.raises(ValueError, match="not an ICE candidate"):
        parse_candidate(candidate, "0", 0)


def test_a_candidate_without_its_m_line_is_refused() -> None:
    with pytest.raises(ValueError, match="sdpMid or sdpMLineIndex"):
        parse_candidate(HOST, None, None)


class Pc:
    def __init__(self) -> None:
        self.added: list[Any] = []

    async def addIceCandidate(self, candidate: Any) -> None:  # aiortc's name
        self.added.append(candidate)


async def test_candidates_reach_the_peer_connection_and_an_empty_one_ends_them() -> None:
    pc = Pc()
    await add_ice_candidate(pc, HOST, "1", 1)  # type: ignore[arg-type]
    await add_ice_candidate(pc, "", None, None)  # type: ignore[arg-type]
    assert [c.ip if c is not None else None for c in pc.added] == ["192.0.2.7", None]
    with pytest.raises(ValueError):
        await add_ice_candidate(pc, "candidate:bogus", "0", 0)  # type: ignore[arg-type]
    assert len(pc.added) == 2
