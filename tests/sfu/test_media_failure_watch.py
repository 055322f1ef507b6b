"""MediaFailureWatch (sfu/room/media_failure_watch.py), pure, on a clock moved by hand: media
that could never flow between two connected parties is our failure (M6: the visit is credited)."""

from __future__ import annotations

from sfu.room.media_failure_watch import DEFAULT_MEDIA_TIMEOUT, MediaFailureWatch


class World:
    def __init__(self) -> None:
        self.t = 0.0
        self.reached = False
        self.started = True
        self.asked = 0

    def clock(self) -> float:
        return self.t

    def frames_reached_peer(self) -> bool:
        self.asked += 1
        return self.reached

    def has_started(self) -> bool:
        return self.started


def watch(world: World) -> MediaFailureWatch:
    return MediaFailureWatch(world.frames_reached_peer, world.clock, timeout=DEFAULT_MEDIA_TIMEOUT)


def test_m6_both_connected_after_the_start_and_no_frame_within_the_timeout_is_a_failure() -> None:
    world = World()
    w = watch(world)
    w.connections(True)
    assert not w.never_flowed(world.has_started)  # silent from now
    world.t = 29.9
    assert not w.never_flowed(world.has_started)
    world.t = 30.0
    assert w.never_flowed(world.has_started)


def test_a_frame_that_reached_a_party_ends_the_watch_for_good() -> None:
    world = World()
    w = watch(world)
    w.connections(True)
    w.never_flowed(world.has_started)
    world.t, world.reached = 10.0, True
    assert not w.never_flowed(world.has_started) and w.media_flowed
    world.t, world.reached = 100.0, False
    asked = world.asked
    assert not w.never_flowed(world.has_started) and world.asked == asked  # latched: not asked again
    assert not w.failed_at_end()


def test_the_lobby_and_a_party_that_is_not_connected_are_not_failures() -> None:
    world = World()
    w = watch(world)
    world.started = False  # S1: no media before the start
    w.connections(True)
    for world.t in (0.0, 40.0, 80.0):
        assert not w.never_flowed(world.has_started)
    world.started = True
    w.connections(False)  # one side's connection went down: it may rejoin (S5)
    for world.t in (80.0, 200.0):
        assert not w.never_flowed(world.has_started)
    w.connections(True)  # rejoined: the silence is counted from the start again
    world.t = 229.0
    assert not w.never_flowed(world.has_started)
    world.t = 259.0
    assert w.never_flowed(world.has_started)


def test_m6_at_the_end_both_connected_once_and_nothing_ever_flowed_is_a_failure() -> None:
    world = World()
    w = watch(world)
    assert not w.failed_at_end()  # never both connected: a no-show, not our failure
    w.connections(True)
    w.connections(False)
    assert w.both_ever and w.failed_at_end()
    w.stop()
    world.reached = True
    assert not w.failed_at_end()
