"""Test setup for visit sessions and money, independent of the booking area.

Facilities, units, residents, kiosks and visits are inserted as ORM rows; visits are paid with
the real `billing.pay_for_visit` (card through the test gateway, or credit), so the ledger is
real. Events are reported over HTTP exactly as a media node would.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from control_api.auth import Principal, Role, hash_password
from control_api.db.models import CreditLot, CreditRequest, Facility, HousingUnit, Kiosk, Resident, Visit
from control_api.domain.pricing import BillingMode, FeeSpec, build_quote
from control_api.services import billing
from tests.support import Api, As

_ids = itertools.count(1)


# ---------------------------------------------------------------- media-node reports


def media_headers(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.ctx.media_secret}"}


async def report(api: Api, visit_id: str, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    body = {"event_id": f"ev-{uuid.uuid4().hex[:12]}-{next(_ids)}", "visit_id": visit_id, "kind": kind,
            "occurred_at": at.isoformat(), **fields}
    resp = await api.anonymous.post("/v1/internal/media-events", body, headers=media_headers(api))
    answer: dict[str, Any] = resp.ok()
    return answer


async def run_visit(api: Api, visit: dict[str, Any], *, visitor: bool = True, resident: bool = True,
                    end: dict[str, Any] | None = None, connected_seconds: int | None = None) -> None:
    """Both join at the start (the resident 5 s later), media starts, and optionally the end is
    reported with `connected_seconds` (default: the whole length)."""
    start = datetime.fromisoformat(visit["starts_at"])
    if visitor:
        await report(api, visit["id"], "participant_joined", start, participant="visitor")
    if resident:
        await report(api, visit["id"], "participant_joined", start + timedelta(seconds=5), participant="resident")
    if visitor and resident:
        await report(api, visit["id"], "started", start + timedelta(seconds=6))
    if end is not None:
        seconds = connected_seconds if connected_seconds is not None else visit["length_minutes"] * 60
        await report(api, visit["id"], "ended", start + timedelta(seconds=seconds), connected_seconds=seconds, **end)


# ---------------------------------------------------------------- ORM world


@dataclass
class Seeded:
    """One facility with one housing unit, one resident and one kiosk; an operator and a visitor."""

    facility_id: str
    unit_id: str
    resident_id: str
    kiosk: As
    operator: As
    visitor: As
    billing_mode: str
    price_cents: int
    per_minute_cents: int


def whole_second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


async def seed_world(api: Api, *, billing_mode: str = "per_visit", price_cents: int = 750,
                     per_minute_cents: int = 20, operator: As | None = None) -> Seeded:
    now = api.ctx.clock.now()
    n = next(_ids)
    async with api.ctx.sessions() as session, session.begin():
        facility = Facility(name=f"Seeded {n}", timezone="America/Chicago", billing_mode=billing_mode,
                            created_at=now)
        session.add(facility)
        await session.flush()
        unit = HousingUnit(facility_id=facility.id, name="A", kiosk_count=2)
        session.add(unit)
        await session.flush()
        resident = Resident(facility_id=facility.id, housing_unit_id=unit.id, booking_number=f"S-{n}",
                            full_name=f"Resident {n}")
        kiosk = Kiosk(facility_id=facility.id, housing_unit_id=unit.id, name="K1", secret_hash=hash_password("k"))
        session.add_all([resident, kiosk])
        await session.flush()
        ids = facility.id, unit.id, resident.id, kiosk.id
    return Seeded(facility_id=ids[0], unit_id=ids[1], resident_id=ids[2],
                  kiosk=kiosk_caller(api, ids[3], ids[0], ids[1]), operator=operator or await api.operator(),
                  visitor=await api.sign_up("visitor"), billing_mode=billing_mode, price_cents=price_cents,
                  per_minute_cents=per_minute_cents)


def kiosk_caller(api: Api, kiosk_id: str, facility_id: str, unit_id: str) -> As:
    """A signed-in kiosk (a real access token for the kiosk principal, bound to its unit)."""
    token = api.token_for(Principal(kiosk_id, Role.KIOSK, facility_id, unit_id))
    return api.track(As(api, token, kiosk_id))


async def add_unit_kiosk(api: Api, world: Seeded, name: str = "B") -> As:
    """A kiosk in another housing unit of the same facility."""
    async with api.ctx.sessions() as session, session.begin():
        unit = HousingUnit(facility_id=world.facility_id, name=name, kiosk_count=1)
        session.add(unit)
        await session.flush()
        kiosk = Kiosk(facility_id=world.facility_id, housing_unit_id=unit.id, name=name,
                      secret_hash=hash_password("k"))
        session.add(kiosk)
        await session.flush()
        kiosk_id, unit_id = kiosk.id, unit.id
    return kiosk_caller(api, kiosk_id, world.facility_id, unit_id)


async def seed_visit(api: Api, world: Seeded, *, starts_in: timedelta, length: int = 30,
                     visitor: As | None = None, status: str = "scheduled", checked_in: bool = False,
                     use_credit: bool = False, card_token: str | None = "tok_visa",
                     fee_cents: int = 0, tax_basis_points: int = 0) -> dict[str, Any]:
    """A paid visit (a bookable-looking row) starting `starts_in` from the clock's now (whole
    seconds, as tokens carry them). Returns the fields tests use, shaped like the API's visit."""
    now = api.ctx.clock.now()
    starts = whole_second(now + starts_in)
    mode: BillingMode = "per_minute" if world.billing_mode == "per_minute" else "per_visit"
    quote = build_quote(billing_mode=mode, visit_type="social", length_minutes=length,
                        price_cents=world.price_cents, per_minute_cents=world.per_minute_cents,
                        fees=[*([FeeSpec("Service fee", "fee", fee_cents)] if fee_cents else []),
                              *([FeeSpec("Sales tax", "tax", rate_basis_points=tax_basis_points)]
                                if tax_basis_points else [])])
    booker = visitor or world.visitor
    assert booker.principal_id is not None
    async with api.ctx.sessions() as session, session.begin():
        visit = Visit(facility_id=world.facility_id, housing_unit_id=world.unit_id, resident_id=world.resident_id,
                      booker_id=booker.principal_id, visit_type="social", starts_at=starts,
                      ends_at=starts + timedelta(minutes=length), length_minutes=length, status=status,
                      billing_mode=mode, price_cents=quote.price_cents, fees_cents=quote.fees_cents,
                      total_cents=quote.total_cents, quote=quote.as_dict(),
                      resident_checked_in_at=now if checked_in else None, created_at=now, updated_at=now)
        session.add(visit)
        await session.flush()
        paid = await billing.pay_for_visit(session, api.ctx, visit=visit, card_token=card_token,
                                           use_credit=use_credit, idempotency_key=f"seed-{visit.id}", now=now,
                                           on_rollback=[])
        return {"id": visit.id, "starts_at": starts.isoformat(), "ends_at": visit.ends_at.isoformat(),
                "length_minutes": length, "total_cents": visit.total_cents, "price_cents": visit.price_cents,
                "fees_cents": visit.fees_cents, "credit_used_cents": paid.credit_used_cents,
                "card_charged_cents": paid.card_charged_cents}


async def load_visit(api: Api, visit_id: str) -> Visit:
    async with api.ctx.sessions() as session:
        visit = await session.get(Visit, visit_id)
        assert visit is not None
        return visit


async def lots_of(api: Api, visitor_id: str) -> list[CreditLot]:
    async with api.ctx.sessions() as session:
        return list((await session.scalars(select(CreditLot).where(CreditLot.visitor_id == visitor_id)
                                           .order_by(CreditLot.issued_at, CreditLot.id))).all())


async def credit_request_row(api: Api, request_id: str) -> CreditRequest:
    async with api.ctx.sessions() as session:
        row = await session.get(CreditRequest, request_id)
        assert row is not None
        return row


async def ledger_balanced(api: Api) -> bool:
    async with api.ctx.sessions() as session:
        return await billing.ledger_is_balanced(session)


async def sweep_now(api: Api, operator: As) -> dict[str, int]:
    """Run every sweep once at the current (test) clock."""
    swept: dict[str, int] = (await operator.post("/v1/test-clock/sweep")).ok()["sweeps"]
    return swept
