"""ParticipantConnection (sfu/room/participant_connection.py): one party's peer connection, opened
with its audio and video forwarding transceivers before the offer (so the other party's media can
be attached at any time without renegotiation, S5), and what the room reads of the party."""

from __future__ import annotations

from typing import Any

from sfu.room.participant_connection import ParticipantConnection, other_side, side_of
from sfu.router import EncodedFrame, Router


async def _send(_message: dict[str, Any]) -> None:
    return None


async def _no_pli() -> None:
    return None


def test_a_role_is_a_side_and_each_side_has_the_other() -> None:
    assert side_of("resident") == "resident"
    assert side_of("visitor") == side_of("attorney") == "visitor"
    assert other_side("visitor") == "resident" and other_side("resident") == "visitor"


async def test_a_connection_opens_with_its_forwarding_transceivers_and_closes_them() -> None:
    hung_up: list[bool] = []
    party = ParticipantConnection.open("user-1", "visitor", _send, [], lambda: hung_up.append(True))
    assert (party.participant_id, party.side, party.send, party.dropped) == ("user-1", "visitor", _send, False)
    assert [(t.kind, t.direction, t.sender.track) for t in party.pc.getTransceivers()] == [
        ("audio", "sendrecv", party.outgoing["audio"]), ("video", "sendrecv", party.outgoing["video"])]
    assert party.packets_retransmitted() == party.datagrams_refused() == 0
    await party.close()
    assert party.pc.connectionState == "closed"
    assert all(track.readyState == "ended" for track in party.outgoing.values()) and hung_up == []


async def test_its_published_frames_are_counted_over_its_producers() -> None:
    router = Router("v1", privileged=False)
    party = ParticipantConnection.open("user-1", "visitor", _send, [])
    try:
        assert party.frames_published() == 0
        audio = router.add_producer("user-1", "audio", _no_pli)
        video = router.add_producer("user-1", "video", _no_pli)
        party.producers["audio"], party.producers["video"] = audio, video
        audio.publish(EncodedFrame("audio", b"\xfc", 0, 48_000, True, 0.0))
        video.publish(EncodedFrame("video", b"\x10\x02\x00", 0, 90_000, True, 0.0))
        video.publish(EncodedFrame("video", b"\x31", 3000, 90_000, False, 0.0))
        assert party.frames_published() == 3
    finally:
        await party.close()
        await router.close()
