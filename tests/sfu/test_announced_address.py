"""The SFU behind a 1:1 NAT (issue 14): it binds its private address and announces the public one
(`media_announced_address`), the way mediasoup's announced IP works; only the SDP changes."""

from __future__ import annotations

import re

import pytest
from aiortc import RTCPeerConnection

from sfu.aiortc_adapter import announce_host_address, contract, restrict_host_candidates, rtc_configuration


async def test_host_candidates_announce_the_public_address_and_bind_the_private_one() -> None:
    undo = [restrict_host_candidates(["127.0.0.1"]), announce_host_address("203.0.113.7")]
    pc = RTCPeerConnection(rtc_configuration())
    try:
        pc.addTransceiver("video")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        candidates = re.findall(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", sdp)
        assert candidates and {ip for ip, _ in candidates} == {"203.0.113.7"}, sdp
        assert "c=IN IP4 203.0.113.7" in sdp
        connection = contract.ice_connection(pc.getTransceivers()[0].sender.transport.transport)
        bound = {p.transport.get_extra_info("sockname") for p in contract.ice_protocols(connection)}
        assert {(host, str(port)) for host, port in bound} == {("127.0.0.1", port) for _, port in candidates}
    finally:
        await pc.close()
        for u in reversed(undo):
            u()
    pc = RTCPeerConnection(rtc_configuration())
    try:  # undone: the bound address is announced again
        pc.addTransceiver("video")
        await pc.setLocalDescription(await pc.createOffer())
        assert "203.0.113.7" not in pc.localDescription.sdp
    finally:
        await pc.close()


def test_a_name_is_refused() -> None:
    with pytest.raises(ValueError):
        announce_host_address("media.example.org")
