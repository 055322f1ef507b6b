"""services.facility_configuration: settings checked against each other (A5, M8) are re-checked
together whichever changed, and refusals are domain errors with the slugs the API answers with."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.auth import Role
from control_api.db.models import Facility, SessionOption
from control_api.domain.errors import Forbidden, RuleViolation
from control_api.domain.rates import per_minute_cap_cents
from control_api.services import facility_configuration as config


class _Rows:
    def __init__(self, rows: list[SessionOption]) -> None:
        self.rows = rows

    def all(self) -> list[SessionOption]:
        return self.rows


class _Session:
    """Just enough of an AsyncSession for the rate check: the facility's session options."""

    def __init__(self, options: list[SessionOption]) -> None:
        self.options = options

    async def scalars(self, _statement: Any) -> _Rows:
        return _Rows(self.options)


def _facility(**values: Any) -> Facility:
    defaults: dict[str, Any] = {"id": "f1", "name": "North", "timezone": "America/Chicago",
                                "booking_horizon_days": 14, "min_lead_minutes": 60, "billing_mode": "per_visit",
                                "size_tier": "jail_under_50"}
    return Facility(**{**defaults, **values})


def _session(*per_minute_cents: int) -> AsyncSession:
    options = [SessionOption(facility_id="f1", visit_type="social", length_minutes=30, price_cents=0,
                             per_minute_cents=c) for c in per_minute_cents]
    return cast(AsyncSession, _Session(options))


def test_a5_lead_time_must_be_shorter_than_the_horizon() -> None:
    config.check_booking_window(_facility())
    with pytest.raises(RuleViolation) as refused:
        config.check_booking_window(_facility(booking_horizon_days=1, min_lead_minutes=24 * 60))
    assert refused.value.slug == "invalid-booking-window" and "(rule A5)" in refused.value.detail


async def test_m8_switching_to_per_minute_rechecks_every_price() -> None:
    """A price fine under per-visit billing breaks the cap once the mode changes (M8)."""
    cap = per_minute_cap_cents("jail_under_50")
    facility = _facility()
    with pytest.raises(RuleViolation) as refused:
        await config.configure(_session(cap + 1), facility, {"billing_mode": "per_minute"}, by=Role.ADMIN)
    assert refused.value.slug == "rate-above-cap"
    ok = _facility()
    await config.configure(_session(cap), ok, {"billing_mode": "per_minute"}, by=Role.ADMIN)
    assert ok.billing_mode == "per_minute"


async def test_m8_only_the_operator_reclassifies_the_size_tier() -> None:
    facility = _facility()
    with pytest.raises(Forbidden, match="only the operator"):
        await config.configure(_session(), facility, {"size_tier": "prison"}, by=Role.ADMIN)
    assert facility.size_tier == "jail_under_50"
    await config.configure(_session(), facility, {"size_tier": "jail_under_50", "name": "N"}, by=Role.ADMIN)
    await config.configure(_session(), facility, {"size_tier": "prison"}, by=Role.OPERATOR)
    assert facility.size_tier == "prison"


async def test_a3_each_length_is_offered_once() -> None:
    option = {"visit_type": "social", "length_minutes": 30, "price_cents": 500, "per_minute_cents": 0}
    with pytest.raises(RuleViolation) as refused:
        await config.replace_session_options(_session(), _facility(), [option, dict(option)])
    assert refused.value.slug == "duplicate-option"
    assert refused.value.detail == "30-minute social is listed twice"
