"""RoomTotals (sfu/room/room_totals.py): what a departed party's producers and senders counted is
kept when they are removed, so the SFU's statistics never go backwards."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sfu.room.room_totals import RoomTotals
from sfu.router import EncodedFrame, Router

KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])


async def _no_pli() -> None:
    return None


@dataclass
class Senders:
    retransmitted: int
    refused: int

    def packets_retransmitted(self) -> int:
        return self.retransmitted

    def datagrams_refused(self) -> int:
        return self.refused


async def test_a_removed_producers_counts_and_a_closed_partys_senders_are_kept() -> None:
    router = Router("v1", privileged=False)
    video = router.add_producer("visitor", "video", _no_pli)
    peer = router.consume(video, "resident-video", "peer")
    peer.sink = lambda _frame: True
    router.consume(video, "monitor-video", "monitor").sink = lambda _frame: True
    await asyncio.sleep(0)  # the PLI the late joiners asked for goes out
    for ts in range(3):
        video.publish(EncodedFrame("video", KEY, ts * 3000, 90_000, True, 0.0))
    totals = RoomTotals()
    totals.add_producer(video)
    await router.remove_producer(video)
    totals.add_senders(Senders(retransmitted=4, refused=1))
    totals.add_senders(Senders(retransmitted=2, refused=0))
    # every consumer's frames (a monitor's too), and the one PLI sent for both late joiners
    assert totals == RoomTotals(frames_forwarded=6, bytes_received=3 * len(KEY), plis_sent=1,
                                packets_retransmitted=6, datagrams_refused=1)
    await router.close()
