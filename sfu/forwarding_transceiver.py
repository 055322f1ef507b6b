"""A forwarding transceiver: how every leg of the SFU sends media, a participant's or a monitor's.

The transceiver is created before the client's offer is applied, with its codecs pinned to VP8
and Opus (codec preferences set after `setRemoteDescription` do nothing for an answer, and every
leg of a room must carry the codec its publisher sends: the SFU never transcodes). Its sender
carries a `ForwardingTrack`, so whichever consumer is attached later is sent without any
renegotiation (S5: a party may leave and rejoin).
"""

from __future__ import annotations

from typing import Literal

from aiortc import RTCPeerConnection, RTCRtpSender

from sfu.aiortc_adapter import ForwardingTrack, forward_through
from sfu.router.frames import Kind

FORWARDED_CODECS = ("video/vp8", "audio/opus")


def add_forwarding_transceiver(pc: RTCPeerConnection, kind: Kind,
                               direction: Literal["sendrecv", "sendonly"]) -> ForwardingTrack:
    """Add a `kind` transceiver to `pc` whose sender forwards the returned track's consumer."""
    track = ForwardingTrack(kind)
    transceiver = pc.addTransceiver(track, direction=direction)
    transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities(kind).codecs
                                     if c.mimeType.lower() in FORWARDED_CODECS])
    forward_through(transceiver.sender, track)
    return track
