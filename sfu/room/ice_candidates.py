"""Trickle ICE: a client's candidate, checked, into a peer connection.

Candidates arrive over signaling after the offer ("" ends them). They are untrusted input: a
malformed one is refused here with ValueError (the signaling server answers it with an error
message) instead of being handed to aioice to fail later, out of sight.
"""

from __future__ import annotations

from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp


def parse_candidate(candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> RTCIceCandidate:
    """An `a=candidate` value ("candidate:" prefix optional) for the m-line it names. Raises
    ValueError unless it has a foundation, a numeric component, priority and port, and `typ`."""
    if sdp_mid is None and sdp_mline_index is None:
        raise ValueError("a candidate needs sdpMid or sdpMLineIndex")
    fields = candidate.removeprefix("candidate:").split()
    if len(fields) < 8 or fields[6] != "typ" or not fields[1].isdigit() or not fields[3].isdigit() \
            or not fields[5].isdigit():
        raise ValueError(f"not an ICE candidate: {candidate[:80]!r}")
    parsed: RTCIceCandidate = candidate_from_sdp(" ".join(fields))
    parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
    return parsed


async def add_ice_candidate(pc: RTCPeerConnection, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
    """Trickle ICE into `pc`; "" ends the candidates. Raises ValueError for a malformed one."""
    if not candidate:
        await pc.addIceCandidate(None)
        return
    await pc.addIceCandidate(parse_candidate(candidate, sdp_mid, sdp_mline_index))
