"""The forwarding transceiver (sfu/forwarding_transceiver.py), shared by a participant's and a
monitor's peer connection: VP8 and Opus only (the SFU never transcodes, so every leg carries the
publisher's codec), the direction asked for, a ForwardingTrack on its sender."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection

from sfu.aiortc_adapter import ForwardingTrack
from sfu.forwarding_transceiver import add_forwarding_transceiver


def rtpmaps(sdp: str, kind: str) -> set[str]:
    """The codec names the `kind` m-line of an SDP offers (rtx excepted)."""
    section = sdp.split(f"m={kind} ", 1)[1].split("\nm=", 1)[0]
    names = {line.split(" ", 1)[1].split("/", 1)[0].lower() for line in section.splitlines()
             if line.startswith("a=rtpmap:")}
    return names - {"rtx"}


@pytest.mark.parametrize("direction", ["sendrecv", "sendonly"])
async def test_a_forwarding_transceiver_offers_vp8_and_opus_only(direction: str) -> None:
    pc = RTCPeerConnection()
    try:
        audio = add_forwarding_transceiver(pc, "audio", direction)  # type: ignore[arg-type]
        video = add_forwarding_transceiver(pc, "video", direction)  # type: ignore[arg-type]
        assert isinstance(audio, ForwardingTrack) and isinstance(video, ForwardingTrack)
        assert [(t.kind, t.direction, t.sender.track) for t in pc.getTransceivers()] == [
            ("audio", direction, audio), ("video", direction, video)]
        offer = await pc.createOffer()
        assert rtpmaps(offer.sdp, "audio") == {"opus"} and rtpmaps(offer.sdp, "video") == {"vp8"}
        assert offer.sdp.count(f"a={direction}") == 2
    finally:
        await pc.close()
