"""Availability latency: 14 days of bookable slots for one resident, 1,000 visits in the facility.

Seeds a fresh SQLite database (the default deployment) through the models, then times
(1) the pure rule computation, (2) the service call (queries + rules) and (3) the full HTTP
request through the real application on a loopback port. Prints p50/p95/max in milliseconds.
Target (issue 2): under 50 ms for the HTTP request.

    .venv/bin/python benchmarks/availability.py [--runs 50] [--visits 1000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvloop
from aiohttp import ClientSession

from control_api.app import create_app, start_site
from control_api.auth import Principal, Role
from control_api.context import CONTEXT
from control_api.db.engine import make_engine, make_sessionmaker
from control_api.db.migrate import upgrade
from control_api.db.models import (
    AccessRequest,
    Facility,
    HousingUnit,
    Resident,
    SessionOption,
    User,
    Visit,
    VisitationWindow,
)
from control_api.domain.pricing import build_quote
from control_api.domain.schedule import Schedule
from control_api.services import booking
from openvisit.settings import Mode, Settings

DAYS = 14
WARMUP = 5


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class GcPauses:
    """Full (generation 2) garbage collections seen while timing: they explain most outliers."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._started)

    def summary(self) -> str:
        if not self.pauses:
            return "none"
        return f"{len(self.pauses)}, longest {max(self.pauses) * 1000:.1f} ms"


def report(name: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(f"{name:<34} p50 {statistics.median(ms):7.2f} ms   p95 {pct(ms, 0.95):7.2f} ms   max {max(ms):7.2f} ms")


async def seed(url: str, n_visits: int) -> tuple[str, str]:
    engine = make_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    rng = random.Random(7)
    async with sessions() as s, s.begin():
        fac = Facility(name="Bench County", timezone="America/Chicago", booking_horizon_days=30, min_lead_minutes=0,
                       weekly_visit_limit=50, created_at=now)
        s.add(fac)
        await s.flush()
        units = [HousingUnit(facility_id=fac.id, name=f"U{i}", kiosk_count=8) for i in range(3)]
        s.add_all(units)
        await s.flush()
        for u in units:
            s.add_all(VisitationWindow(housing_unit_id=u.id, weekday=d, start_minute=8 * 60, end_minute=21 * 60)
                      for d in range(7))
        s.add(SessionOption(facility_id=fac.id, visit_type="social", length_minutes=30, price_cents=750))
        residents = [Resident(facility_id=fac.id, housing_unit_id=units[i % 3].id, booking_number=f"B{i}",
                              full_name=f"R {i}") for i in range(300)]
        s.add_all(residents)
        visitor = User(email="bench@example.org", password_hash="x", role="visitor", legal_name="Bench",
                       created_at=now)
        s.add(visitor)
        await s.flush()
        s.add(AccessRequest(visitor_id=visitor.id, facility_id=fac.id, status="approved", created_at=now))
        quote = build_quote(billing_mode="per_visit", visit_type="social", length_minutes=30, price_cents=750,
                            per_minute_cents=0, fees=[]).as_dict()
        target = residents[0]
        day0 = now.replace(hour=14, minute=0, second=0, microsecond=0) + timedelta(days=1)
        for i in range(n_visits):
            # Half of all visits land in the target resident's unit: the expensive case.
            r = residents[3 * rng.randrange(100)] if i % 2 == 0 else rng.choice(residents)
            if r is target and i % 10:
                r = residents[3]
            start = day0 + timedelta(days=rng.randrange(DAYS), minutes=15 * rng.randrange(48))
            s.add(Visit(facility_id=fac.id, housing_unit_id=r.housing_unit_id, resident_id=r.id,
                        booker_id=visitor.id, visit_type="social", starts_at=start,
                        ends_at=start + timedelta(minutes=30), length_minutes=30, status="scheduled",
                        billing_mode="per_visit", price_cents=750, fees_cents=0, total_cents=750, quote=quote,
                        created_at=now, updated_at=now))
        resident_id, visitor_id = target.id, visitor.id
    await engine.dispose()
    return resident_id, visitor_id


async def main(runs: int, n_visits: int, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = postgres or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        resident_id, visitor_id = await seed(url, n_visits)
        settings = Settings(mode=Mode.TEST, data_dir=Path(tmp) / "data", database_url=url)
        app = create_app(settings, run_sweeper=False)
        runner, port = await start_site(app, "127.0.0.1", 0)
        ctx = app[CONTEXT]
        now = ctx.clock.now()
        first = (now + timedelta(days=1)).date()
        last = first + timedelta(days=DAYS - 1)

        pauses = GcPauses()
        async with ctx.read_sessions() as session:
            rctx = await booking.resident_context(session, resident_id)
            assert rctx is not None
            loaded = await booking.load_schedule(session, rctx, now, now + timedelta(days=DAYS + 2))
            pure, service = [], []
            gc.collect()  # start each series without the seeding's garbage; warm-up runs are not timed
            for n in range(runs + WARMUP):
                t = time.perf_counter()
                # A fresh Schedule each run: building its blocked spans is part of the computation.
                schedule = Schedule(policy=loaded.policy, windows=loaded.windows, closures=loaded.closures,
                                    unit_visits=loaded.unit_visits, resident_visits=loaded.resident_visits)
                slots = schedule.available_slots(first, last, timedelta(minutes=30), now)
                if n >= WARMUP:
                    pure.append(time.perf_counter() - t)
            gc.collect()
            for n in range(runs + WARMUP):
                t = time.perf_counter()
                await booking.available_slots(session, rctx, first, last, 30, now)
                if n >= WARMUP:
                    service.append(time.perf_counter() - t)

        token = ctx.access_tokens.issue(Principal(visitor_id, Role.VISITOR), now)[0]
        url_path = (f"http://127.0.0.1:{port}/v1/residents/{resident_id}/availability"
                    f"?from={first}&to={last}&length_minutes=30")
        http = []
        async with ClientSession(headers={"Authorization": f"Bearer {token}"}) as client:
            for _ in range(WARMUP):
                async with client.get(url_path) as resp:
                    assert resp.status == 200, await resp.text()
                    body = await resp.json()
            gc.collect()
            for _ in range(runs):
                t = time.perf_counter()
                async with client.get(url_path) as resp:
                    await resp.read()
                http.append(time.perf_counter() - t)
        await runner.cleanup()

    db = "PostgreSQL" if postgres else "SQLite"
    print(f"availability: {DAYS} days, 1 resident, {n_visits} visits in the facility, {db}, {runs} runs")
    print(f"slots returned: {len(body['slots'])} (pure computation found {len(slots)})")
    report("pure rules (in memory)", pure)
    report("service (queries + rules)", service)
    report("HTTP GET .../availability", http)
    print(f"full GC pauses during the runs: {pauses.summary()}")
    print(f"availability HTTP p95: {pct([x * 1000 for x in http], 0.95):.2f} ms (target < 50 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--visits", type=int, default=1000)
    parser.add_argument("--postgres", help="postgresql+asyncpg://... (an empty database) instead of SQLite")
    args = parser.parse_args()
    uvloop.run(main(args.runs, args.visits, args.postgres))
