"""RoomTotals: what a room's departed parties forwarded, received and sent, kept when they leave.

Live producers and senders count for themselves; when a party leaves, its producers are removed
from the router and its senders stopped, so their counts move here first. The SFU's statistics
add these to the live counts (and to the totals of closed rooms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sfu.router import Producer


class Senders(Protocol):
    """A party's outgoing senders, as counted (a `ParticipantConnection`)."""

    def packets_retransmitted(self) -> int: ...

    def datagrams_refused(self) -> int: ...


@dataclass
class RoomTotals:
    frames_forwarded: int = 0
    bytes_received: int = 0
    plis_sent: int = 0
    packets_retransmitted: int = 0
    datagrams_refused: int = 0

    def add_producer(self, producer: Producer) -> None:
        """A producer about to be removed: the frames its consumers got, what it received, its PLIs."""
        self.frames_forwarded += sum(c.frames_delivered for c in producer.consumers)
        self.bytes_received += producer.bytes_published
        self.plis_sent += producer.keyframes.plis_sent

    def add_senders(self, participant: Senders) -> None:
        """A party about to be closed: what was sent to it again, and what its socket refused."""
        self.packets_retransmitted += participant.packets_retransmitted()
        self.datagrams_refused += participant.datagrams_refused()
