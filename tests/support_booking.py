"""Helpers for booking tests: times on the 15-minute grid, one-call bookings, extra units and residents."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from control_api.db.models import CreditLot
from tests.support import Api, As, Response
from tests.support_facility import FacilityWorld


def at(api: Api, *, days: float = 2, hours: float = 0, minutes: int = 0, zone: str = "America/Chicago") -> datetime:
    """An instant `days` from the (test) clock's now, on the 15-minute grid.

    Late evenings (local) move to the next morning, so a test adding up to two hours never crosses
    local midnight, which would leave the facility's day-long windows (B2) whatever the time of day
    the suite runs at."""
    base = api.ctx.clock.now() + timedelta(days=days, hours=hours)
    base = base.replace(minute=(base.minute // 15) * 15, second=0, microsecond=0)
    if base.astimezone(ZoneInfo(zone)).hour >= 22:
        base += timedelta(hours=10)
    return base + timedelta(minutes=minutes)


def local(day: date, hour: int, minute: int = 0, zone: str = "America/Chicago") -> datetime:
    """A wall-clock time at a facility, as an aware datetime."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone))


async def book(visitor: As, resident_id: str, starts_at: datetime, *, length: int = 30, visit_type: str = "social",
               token: str | None = "tok_visa", use_credit: bool = True, key: str | bool = True) -> Response:
    body: dict[str, Any] = {"resident_id": resident_id, "starts_at": starts_at.isoformat(), "length_minutes": length,
                            "visit_type": visit_type, "payment": {"card_token": token, "use_credit": use_credit}}
    return await visitor.post("/v1/visits", body, idempotency_key=key)


async def add_resident(w: FacilityWorld, name: str, unit_id: str | None = None) -> str:
    body = {"booking_number": name.replace(" ", "-"), "full_name": name, "housing_unit_id": unit_id or w.unit_id}
    created: dict[str, Any] = (await w.admin.post(f"/v1/facilities/{w.facility_id}/residents", body)).ok(201)
    return str(created["id"])


async def add_unit(api: Api, w: FacilityWorld, name: str = "B") -> tuple[str, As]:
    """A second housing unit with all-day windows and one kiosk; returns (unit id, signed-in kiosk)."""
    fid = w.facility_id
    unit = (await w.admin.post(f"/v1/facilities/{fid}/housing-units", {"name": name, "kiosk_count": 1})).ok(201)
    (await w.admin.put(f"/v1/facilities/{fid}/housing-units/{unit['id']}/windows", {"windows": [
        {"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]})).ok()
    kiosk = (await w.admin.post(f"/v1/facilities/{fid}/kiosks", {"housing_unit_id": unit["id"], "name": name})).ok(201)
    token = (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk["id"], "secret": kiosk["secret"]})).ok()
    return unit["id"], api.track(As(api, token["access_token"], kiosk["id"]))


async def credit_lots(api: Api, visit_ids: list[str]) -> list[CreditLot]:
    """The credit lots issued for these visits, in the given order."""
    async with api.ctx.sessions() as s:
        lots = {lot.visit_id: lot for lot in (await s.scalars(select(CreditLot).where(
            CreditLot.visit_id.in_(visit_ids)))).all()}
    return [lots[v] for v in visit_ids]


async def advance_to(api: Api, operator: As, instant: datetime) -> None:
    """Move the test clock forward to `instant` (sweeps run at once, as after any clock move)."""
    seconds = int((instant - api.ctx.clock.now()).total_seconds())
    assert seconds > 0, f"{instant} is not in the future"
    await api.advance(operator, seconds)
