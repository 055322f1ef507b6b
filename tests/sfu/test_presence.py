"""Presence (sfu/room/presence.py), pure, at times passed in: connected time counts only while
both parties' media flows inside the visit (S6, M8), and a party whose media stopped is found
(S5: the room drops it so it can rejoin)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sfu.room.presence import DEFAULT_STALL_SECONDS, FLOWING_WINDOW, Presence


@dataclass
class Party:
    frames: int = 0
    last_media: float | None = None
    frames_seen: int = 0

    def frames_published(self) -> int:
        return self.frames


def test_both_flowing_inside_the_visit_is_connected_time() -> None:
    presence = Presence()
    visitor, resident = Party(), Party()
    for t in range(11):  # frames from both, one look a second
        visitor.frames += 50
        resident.frames += 50
        presence.look([visitor, resident], float(t), media_open=True)
    assert presence.connected_seconds == pytest.approx(10.0)
    assert visitor.last_media == resident.last_media == 10.0


def test_lobby_time_one_party_alone_or_a_frozen_party_is_not_connected_time() -> None:
    presence = Presence()
    visitor, resident = Party(), Party()
    for t in range(5):  # S1: both in the lobby, media not open yet
        visitor.frames += 50
        resident.frames += 50
        presence.look([visitor, resident], float(t), media_open=False)
    for t in range(5, 10):  # only the visitor's media arrives: the resident is frozen
        visitor.frames += 50
        presence.look([visitor, resident], float(t), media_open=True)
    assert resident.last_media == 4.0
    # counted while the resident's last frame was within the flowing window: 5 - 4 <= 1
    assert presence.connected_seconds == pytest.approx(FLOWING_WINDOW)
    presence.look([visitor], 10.0, media_open=True)  # one party alone
    assert presence.connected_seconds == pytest.approx(FLOWING_WINDOW)


def test_a_long_gap_between_looks_counts_at_most_one_second() -> None:
    """A stalled event loop is not proof of a visit going on."""
    presence = Presence()
    visitor, resident = Party(frames=1), Party(frames=1)
    presence.look([visitor, resident], 0.0, media_open=True)
    visitor.frames += 1
    resident.frames += 1
    presence.look([visitor, resident], 5.0, media_open=True)
    assert presence.connected_seconds == pytest.approx(1.0)


def test_s5_a_party_whose_media_stopped_is_stalled_after_stall_seconds() -> None:
    presence = Presence(stall_seconds=DEFAULT_STALL_SECONDS)
    visitor, waiting = Party(), Party()
    visitor.frames = 10
    presence.look([visitor, waiting], 1.0, media_open=True)
    assert presence.stalled(visitor, 4.9) is None
    assert presence.stalled(visitor, 5.5) == pytest.approx(4.5)
    assert presence.stalled(waiting, 100.0) is None  # no media ever: not stalled, just not there yet
    presence.look([visitor, waiting], 6.0, media_open=True)  # no new frame: still stalled
    assert presence.stalled(visitor, 6.0) == pytest.approx(5.0)
    visitor.frames += 1
    presence.look([visitor, waiting], 7.0, media_open=True)
    assert presence.stalled(visitor, 7.0) is None
