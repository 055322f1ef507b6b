"""VisitSchedule (sfu/room/visit_schedule.py), pure, on a clock moved by hand: media only from
the start (S1), the end at its time (S2), warnings once per threshold and to a late joiner (S3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sfu.room.visit_schedule import DEFAULT_WARNINGS, VisitSchedule

START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def to(self, at: datetime) -> float:
        self.at = at
        return (END - at).total_seconds()


def test_s1_media_opens_at_the_start_and_stays_open() -> None:
    clock = Clock(START - timedelta(minutes=5))  # in the lobby
    schedule = VisitSchedule(START, END, clock)
    assert not schedule.has_started() and not schedule.open_media() and not schedule.media_open
    clock.to(START)
    assert schedule.open_media() and schedule.media_open
    clock.to(START - timedelta(seconds=1))  # the clock is no longer read: it never moves back
    assert schedule.open_media() and schedule.media_open and not schedule.has_started()


def test_s2_the_end_is_the_scheduled_end_to_the_second() -> None:
    clock = Clock(START)
    schedule = VisitSchedule(START, END, clock)
    assert schedule.remaining() == 1800
    clock.to(END - timedelta(milliseconds=1))
    assert 0 < schedule.remaining() < 0.01
    clock.to(END)
    assert schedule.remaining() == 0
    clock.to(END + timedelta(minutes=3))
    assert schedule.remaining() == -180


def test_s3_warnings_at_two_minutes_and_thirty_seconds_each_once() -> None:
    assert DEFAULT_WARNINGS == (120, 30)
    clock = Clock(START)
    schedule = VisitSchedule(START, END, clock)
    assert schedule.warning_due(clock.to(END - timedelta(seconds=121))) is None
    assert schedule.warning_due(clock.to(END - timedelta(seconds=119.6))) == 120
    assert schedule.warning_due(clock.to(END - timedelta(seconds=100))) is None  # once
    assert schedule.warning_due(clock.to(END - timedelta(seconds=30))) == 30
    assert schedule.warning_due(clock.to(END - timedelta(seconds=5))) is None


def test_s3_thresholds_crossed_together_give_one_warning() -> None:
    """A room whose first look comes late (a loop stalled, a clock moved) says it once."""
    clock = Clock(START)
    schedule = VisitSchedule(START, END, clock, warnings=(30, 120))
    assert schedule.warnings == [120, 30]
    assert schedule.warning_due(clock.to(END - timedelta(seconds=20))) == 20
    assert schedule.warning_due(clock.to(END - timedelta(seconds=10))) is None


def test_s3_a_participant_who_joins_inside_a_threshold_is_warned_at_once() -> None:
    clock = Clock(START)
    schedule = VisitSchedule(START, END, clock)
    assert schedule.warning_on_join(clock.to(END - timedelta(seconds=300))) is None
    assert schedule.warning_on_join(clock.to(END - timedelta(seconds=90.7))) == 90
    assert schedule.warning_on_join(clock.to(END + timedelta(seconds=1))) == 0
    assert VisitSchedule(START, END, clock, warnings=()).warning_on_join(10) is None


def test_the_next_look_comes_at_the_next_threshold_or_the_end_within_a_tick() -> None:
    clock = Clock(START)
    schedule = VisitSchedule(START, END, clock)
    assert schedule.next_look(1800, 0.25) == 0.25
    assert schedule.next_look(120.1, 0.25) == pytest.approx(0.1)  # the 2-minute warning, on time
    assert schedule.next_look(120.0, 0.25) == 0.01  # at a threshold not yet announced: look again soon
    assert VisitSchedule(START, END, clock, warnings=()).next_look(0.05, 0.25) == 0.05  # the end itself
