"""Changing a facility's configuration (rules A2-A5, A7, M7, M8) safely.

Settings that are checked against each other are changed under a lock and re-checked together:
- A5: the booking horizon and the minimum lead time, whichever of the two changed;
- M8: every per-minute price against the cap set by the billing mode and size tier, whenever the
  mode, the tier or the prices change. Both sides take the facility row's lock, so two
  simultaneous requests cannot each pass their check and together break the rule;
- A2: a housing unit's weekly windows are replaced whole, under the unit's lock, so two
  simultaneous replacements never merge their lists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.auth import Role
from control_api.db.models import Facility, FeeItem, HousingUnit, SessionOption, VisitationWindow
from control_api.domain.errors import Conflict, Forbidden, RuleViolation
from control_api.domain.facility_rules import WindowSpec, booking_window_problem, rate_cap_problem, window_problems


async def lock(session: AsyncSession, row: Facility | HousingUnit) -> None:
    """Re-read the row under a lock held until commit (changes checked against each other)."""
    await session.refresh(row, with_for_update=True)


def check_booking_window(facility: Facility) -> None:
    """A5: horizon and lead time are checked together, whichever of the two changed."""
    problem = booking_window_problem(booking_horizon_days=facility.booking_horizon_days,
                                     min_lead_minutes=facility.min_lead_minutes)
    if problem:
        raise RuleViolation(problem, slug="invalid-booking-window")


async def check_rates(session: AsyncSession, facility: Facility) -> None:
    """M8: re-check every per-minute price whenever the mode, tier or prices change."""
    options = (await session.scalars(select(SessionOption).where(SessionOption.facility_id == facility.id))).all()
    for o in options:
        problem = rate_cap_problem(billing_mode=facility.billing_mode, size_tier=facility.size_tier,
                                   per_minute_cents=o.per_minute_cents, visit_type=o.visit_type)
        if problem:
            raise RuleViolation(problem, slug="rate-above-cap")


async def create_facility(session: AsyncSession, values: Mapping[str, Any], now: Any) -> Facility:
    facility = Facility(**values, created_at=now)
    session.add(facility)
    await session.flush()  # column defaults are filled in from here on
    check_booking_window(facility)
    return facility


async def configure(session: AsyncSession, facility: Facility, changes: Mapping[str, Any], *, by: Role) -> None:
    """Apply settings to a facility locked with `lock`. The size tier is a regulatory
    classification that sets the facility's own price cap, so only the operator changes it: a
    facility admin could otherwise lift its cap by re-classifying (M8)."""
    if "size_tier" in changes and changes["size_tier"] != facility.size_tier and by is not Role.OPERATOR:
        raise Forbidden("only the operator changes a facility's size tier, which sets its price cap (rule M8)")
    for name, value in changes.items():
        setattr(facility, name, value)
    check_booking_window(facility)
    await check_rates(session, facility)


async def unit_name_taken(session: AsyncSession, facility_id: str, name: str, except_id: str = "") -> bool:
    found = await session.scalar(select(HousingUnit.id).where(
        HousingUnit.facility_id == facility_id, HousingUnit.name == name, HousingUnit.id != except_id))
    return found is not None


async def require_free_unit_name(session: AsyncSession, facility_id: str, name: str, except_id: str = "") -> None:
    """Housing unit names are unique within a facility."""
    if await unit_name_taken(session, facility_id, name, except_id):
        raise Conflict(f"housing unit {name!r} already exists", slug="unit-exists")


async def replace_windows(session: AsyncSession, unit: HousingUnit, specs: list[WindowSpec]) -> None:
    """A2: replace the unit's weekly windows whole, under the unit's lock."""
    await lock(session, unit)
    problems = window_problems(specs)
    if problems:
        raise RuleViolation("; ".join(problems) + " (rule A2)", slug="invalid-windows", problems=problems)
    await session.execute(delete(VisitationWindow).where(VisitationWindow.housing_unit_id == unit.id))
    session.add_all(VisitationWindow(housing_unit_id=unit.id, weekday=s.weekday, start_minute=s.start_minute,
                                     end_minute=s.end_minute) for s in specs)
    await session.flush()


async def replace_session_options(session: AsyncSession, facility: Facility,
                                  options: Iterable[Mapping[str, Any]]) -> None:
    """A3: replace the lengths and prices offered, each (type, length) once; per-minute prices
    are checked against the cap (M8). `facility` must be locked with `lock`."""
    seen = set()
    rows = list(options)
    for o in rows:
        key = (o["visit_type"], o["length_minutes"])
        if key in seen:
            raise RuleViolation(f"{o['length_minutes']}-minute {o['visit_type']} is listed twice",
                                slug="duplicate-option")
        seen.add(key)
    await session.execute(delete(SessionOption).where(SessionOption.facility_id == facility.id))
    session.add_all(SessionOption(facility_id=facility.id, **o) for o in rows)
    await session.flush()
    await check_rates(session, facility)


async def replace_fees(session: AsyncSession, facility: Facility, fees: Iterable[Mapping[str, Any]]) -> None:
    """M7: replace the fees and taxes itemised in quotes. `facility` must be locked with `lock`."""
    await session.execute(delete(FeeItem).where(FeeItem.facility_id == facility.id))
    session.add_all(FeeItem(facility_id=facility.id, **f) for f in fees)
    await session.flush()
