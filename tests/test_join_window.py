"""S1 (and S2, S6): the join window is [start - lobby, end), one pure rule used by joining,
monitoring, the officers' live list and kiosk check-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_api.domain.join_window import JoinWindow, Position, latest_start_open_at

START = datetime(2030, 5, 6, 14, 0, tzinfo=UTC)
END = START + timedelta(minutes=30)


def test_the_lobby_opens_ten_minutes_before_the_start() -> None:
    window = JoinWindow.of(START, END, lobby_minutes=10)
    assert window.opens_at == START - timedelta(minutes=10)
    assert window.ends_at == END


def test_positions_at_the_edges() -> None:
    """S1: open from the lobby opening, inclusive; S2: closed at the scheduled end, exclusive."""
    window = JoinWindow.of(START, END, lobby_minutes=10)
    tick = timedelta(microseconds=1)
    assert window.position(window.opens_at - tick) is Position.BEFORE
    assert window.position(window.opens_at) is Position.OPEN
    assert window.position(START) is Position.OPEN
    assert window.position(END - tick) is Position.OPEN
    assert window.position(END) is Position.AFTER
    assert not window.is_open(END) and not window.is_open(window.opens_at - tick)
    assert window.is_open(window.opens_at)


def test_no_lobby_opens_at_the_start() -> None:
    window = JoinWindow.of(START, END, lobby_minutes=0)
    assert window.position(START - timedelta(seconds=1)) is Position.BEFORE
    assert window.is_open(START)


def test_query_bound_selects_exactly_the_open_windows() -> None:
    """`starts_at <= latest_start_open_at(now)` and `ends_at > now` (the live list's query) agree
    with the rule for starts around the bound."""
    now = datetime(2030, 5, 6, 13, 50, 30, tzinfo=UTC)
    bound = latest_start_open_at(now, lobby_minutes=10)
    for offset_seconds in range(-120, 121, 15):
        start = now + timedelta(minutes=10, seconds=offset_seconds)
        window = JoinWindow.of(start, start + timedelta(minutes=30), lobby_minutes=10)
        assert window.is_open(now) == (start <= bound and window.ends_at > now)
