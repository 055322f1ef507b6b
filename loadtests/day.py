"""A visiting day as a Locust load shape, compressed in time:

    locust -f loadtests/day.py --world world.json --headless --day-compression 60 [--day-peak-pairs 20]

Visits start together at the top and the half of each hour and last 20 minutes; their parties
join in the lobby minutes before the start (S1), most of them in the last two, then hold; the
pairs are gone ten minutes later until the next lobby opens. The number of visits per block
follows the day (morning and evening peaks), bookers, officers and investigators are on all day.
Every duration is divided by `--day-compression` (60: a 12-hour day in 12 minutes). The users
come from loadtests/locustfile.py: bookers and staff are fixed counts (spawned first, kept), the
visit pairs are the rest of the shape's user count, so a falling count stops pairs only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from locust import LoadTestShape, events

from loadtests.locustfile import Booker, Investigator, Officer, VisitPair
from loadtests.world import World

__all__ = ["Booker", "Investigator", "Officer", "VisitPair", "VisitingDay"]

OPENS_H, CLOSES_H = 8, 20
BLOCK_MIN = 30  # visits start at :00 and :30
VISIT_MIN = 20
LOBBY_MIN = 10
SURGE_MIN = 2  # most parties join in the last two lobby minutes
# Share of the peak per hour of the day (families visit before work and after it).
HOURLY = {8: 0.6, 9: 0.8, 10: 0.7, 11: 0.5, 12: 0.4, 13: 0.5, 14: 0.6, 15: 0.7, 16: 0.8, 17: 1.0, 18: 1.0, 19: 0.7}


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--day-compression", type=float, default=60.0, help="real seconds = day seconds / this")
    parser.add_argument("--day-peak-pairs", type=int, default=0, help="visit pairs at the busiest block "
                        "(default: the visits in the world file)")
    parser.add_argument("--day-bookers", type=int, default=0, help="bookers all day (default: the world's)")


@events.init.add_listener
def _init(environment: Any, **_kw: Any) -> None:
    VisitPair.fixed_count = 0  # after the locustfile's listener: pairs are what the shape adds
    options = environment.parsed_options
    if options is not None and options.day_bookers:
        Booker.fixed_count = options.day_bookers


def pairs_at(minute_of_day: float, peak: int) -> tuple[int, float]:
    """(visit pairs wanted, spawn rate per day-minute) at this minute of the day."""
    hour = int(minute_of_day // 60)
    in_block = minute_of_day % BLOCK_MIN
    to_next = BLOCK_MIN - in_block
    next_hour = int((minute_of_day + to_next) // 60)
    if in_block < VISIT_MIN:  # the block's visits are on
        share = HOURLY.get(hour, 0.0)
        return round(peak * share), peak
    if to_next <= LOBBY_MIN:  # the lobby of the next block
        share = HOURLY.get(next_hour, 0.0)
        early = round(peak * share * 0.3)
        if to_next <= SURGE_MIN:
            return round(peak * share), peak * 2.0  # the surge: all of them within the last minutes
        return early, max(1.0, early / (LOBBY_MIN - SURGE_MIN))
    return 0, peak


class VisitingDay(LoadTestShape):
    """tick() -> (users, spawn rate per second); None ends the run at closing time."""

    world: World | None = None

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner is not None else None
        if self.world is None and options is not None:
            self.world = World.load(Path(options.world))
        compression = float(getattr(options, "day_compression", 60.0) or 60.0)
        peak = int(getattr(options, "day_peak_pairs", 0) or (len(self.world.visits) if self.world else 4))
        fixed = Booker.fixed_count + Officer.fixed_count + Investigator.fixed_count
        minute = OPENS_H * 60 - LOBBY_MIN + self.get_run_time() * compression / 60
        if minute >= CLOSES_H * 60:
            return None
        pairs, per_day_minute = pairs_at(minute, peak)
        return fixed + pairs, max(1.0, per_day_minute * compression / 60)
