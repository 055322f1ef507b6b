"""ParticipantConnection: one party's peer connection in a room, and what the room knows of it.

Negotiation is one offer from each client, answered once: the connection is opened with an audio
and a video forwarding transceiver (`sfu.forwarding_transceiver`) before the offer is applied;
when the other party publishes, leaves or rejoins, only the consumer attached to its outgoing
tracks changes (S5). It also holds what the room's parts read of the party: its producers, when
its connection came up (M6) and when its media last arrived (S5, S6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import RTCPeerConnection

from sfu.aiortc_adapter import ForwardingTrack, rtc_configuration
from sfu.forwarding_transceiver import add_forwarding_transceiver
from sfu.router import Producer
from sfu.router.frames import Kind

Send = Callable[[dict[str, Any]], Awaitable[None]]
Hangup = Callable[[], None]  # closes a client's signaling socket (without waiting for it)
Side = Literal["visitor", "resident"]
KINDS: tuple[Kind, ...] = ("audio", "video")


def side_of(role: str) -> Side:
    return "resident" if role == "resident" else "visitor"


def other_side(side: Side) -> Side:
    return "resident" if side == "visitor" else "visitor"


@dataclass
class ParticipantConnection:
    participant_id: str
    side: Side
    send: Send
    pc: RTCPeerConnection
    outgoing: dict[Kind, ForwardingTrack]  # what this party receives: the other's media
    producers: dict[Kind, Producer] = field(default_factory=dict)  # what it publishes
    connected_since: float | None = None
    dropped: bool = False
    hangup: Hangup | None = None
    last_media: float | None = None  # loop time its media was last seen arriving (lobby included)
    frames_seen: int = 0  # frames its producers published, at the last look

    @classmethod
    def open(cls, participant_id: str, side: Side, send: Send, ice_servers: Sequence[dict[str, Any]],
             hangup: Hangup | None = None) -> ParticipantConnection:
        """A new peer connection with its audio and video transceivers, ready for the offer."""
        pc = RTCPeerConnection(rtc_configuration(ice_servers))
        outgoing = {kind: add_forwarding_transceiver(pc, kind, "sendrecv") for kind in KINDS}
        return cls(participant_id, side, send, pc, outgoing, hangup=hangup)

    def frames_published(self) -> int:
        """Frames this party's producers published (those sent past Python included)."""
        return sum(p.frames_published for p in self.producers.values())

    def packets_retransmitted(self) -> int:
        """RTP packets sent again to this party on its NACKs."""
        return sum(track.packets_retransmitted for track in self.outgoing.values())

    def datagrams_refused(self) -> int:
        """RTP datagrams to this party that its socket refused (send buffer full)."""
        return sum(track.datagrams_refused for track in self.outgoing.values())

    async def close(self) -> None:
        """Stop sending to this party and close its peer connection."""
        for track in self.outgoing.values():
            track.stop()
        await self.pc.close()
