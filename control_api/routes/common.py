"""Shared pieces of the route modules: strict input models and facility-scoped loading."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.api import ApiRequest
from control_api.auth import Role
from control_api.db.models import Facility
from control_api.problems import not_found

T = TypeVar("T")

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=36)]
Text200 = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# Every date and instant a client sends lies in this range (issue 12): far enough for any visit,
# closure or search, and clear of the calendar's edges, where converting an offset (+14:00 on
# 0001-01-01) or adding a visit's length (9999-12-31) would overflow.
MIN_YEAR = 2000
MAX_YEAR = 2200
EARLIEST = datetime(MIN_YEAR, 1, 1, tzinfo=UTC)
LATEST = datetime(MAX_YEAR + 1, 1, 1, tzinfo=UTC)
DATE_RANGE = f"{MIN_YEAR}-01-01 to {MAX_YEAR}-12-31"


def _instant_in_range(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"must lie between {EARLIEST.isoformat()} and {MAX_YEAR}-12-31T23:59:59+00:00 "
                         f"(years {MIN_YEAR}-{MAX_YEAR})")
    return value


def _date_in_range(value: date) -> date:
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise ValueError(f"must lie between {DATE_RANGE} (years {MIN_YEAR}-{MAX_YEAR})")
    return value


Instant = Annotated[AwareDatetime, AfterValidator(_instant_in_range), WithJsonSchema({
    "type": "string", "format": "date-time", "x-minimum": EARLIEST.isoformat(),
    "x-maximum": f"{MAX_YEAR}-12-31T23:59:59+00:00",
    "description": f"an instant with its UTC offset, in years {MIN_YEAR}-{MAX_YEAR}"})]
"""A time-zone-aware instant within years MIN_YEAR..MAX_YEAR (422 otherwise)."""
Day = Annotated[date, AfterValidator(_date_in_range), WithJsonSchema({
    "type": "string", "format": "date", "x-minimum": f"{MIN_YEAR}-01-01", "x-maximum": f"{MAX_YEAR}-12-31",
    "description": f"a calendar date, {DATE_RANGE}"})]
"""A calendar date within years MIN_YEAR..MAX_YEAR (422 otherwise)."""

_INSTANT: TypeAdapter[datetime] = TypeAdapter(Instant)
_DAY: TypeAdapter[date] = TypeAdapter(Day)


def _instant_or_day(value: Any) -> datetime | date:
    """A date alone (YYYY-MM-DD) is a Day, anything else must be an Instant: one precise error."""
    if isinstance(value, datetime | date):
        adapter: TypeAdapter[Any] = _INSTANT if isinstance(value, datetime) else _DAY
    else:
        adapter = _DAY if isinstance(value, str) and len(value.strip()) == 10 else _INSTANT
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")) from None


InstantOrDay = Annotated[datetime | date, BeforeValidator(_instant_or_day), WithJsonSchema({
    "anyOf": [_INSTANT.json_schema(), _DAY.json_schema()]})]
"""An Instant, or a Day (a local date), both within years MIN_YEAR..MAX_YEAR."""

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Strict(BaseModel):
    """Input models reject unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


async def get_or_404(session: AsyncSession, model: type[T], ident: str, what: str) -> T:
    row = await session.get(model, ident)
    if row is None:
        raise not_found(what)
    return row


async def facility_for(req: ApiRequest[Any, Any], facility_id: str) -> Facility:
    """Load a facility; staff and kiosks of another facility are refused (V3)."""
    facility = await get_or_404(req.session, Facility, facility_id, "facility")
    if req.principal.role not in (Role.VISITOR, Role.ATTORNEY):
        req.require_facility(facility.id)
    return facility


def same_facility(req: ApiRequest[Any, Any], row_facility_id: str, expected_facility_id: str, what: str) -> None:
    """A child id must belong to the facility in the path (no mixing of ids across facilities)."""
    if row_facility_id != expected_facility_id:
        raise not_found(what)
