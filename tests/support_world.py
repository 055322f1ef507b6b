"""A small world of rows for tests that need ids of every kind (authorization matrix, fuzzing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from control_api.auth import hash_password
from control_api.db.models import (
    AccessRequest,
    BarVerification,
    Closure,
    CreditRequest,
    Facility,
    HousingUnit,
    Kiosk,
    KioskNotification,
    Resident,
    SessionOption,
    User,
    Visit,
    VisitationWindow,
)
from control_api.domain.pricing import build_quote


async def seed_facility(sessions: async_sessionmaker[AsyncSession], tag: str, now: datetime, visitor: User,
                        attorney: User) -> dict[str, str]:
    """One facility with one of everything, inserted directly; returns path-parameter name -> id."""
    async with sessions() as s, s.begin():
        fac = Facility(name=f"Facility {tag}", timezone="America/Chicago", created_at=now)
        s.add(fac)
        await s.flush()
        unit = HousingUnit(facility_id=fac.id, name="A", kiosk_count=2)
        s.add(unit)
        await s.flush()
        s.add_all(VisitationWindow(housing_unit_id=unit.id, weekday=d, start_minute=0, end_minute=1440)
                  for d in range(7))
        s.add(SessionOption(facility_id=fac.id, visit_type="social", length_minutes=30, price_cents=500))
        resident = Resident(facility_id=fac.id, housing_unit_id=unit.id, booking_number=f"{tag}-1",
                            full_name=f"Resident {tag}")
        kiosk = Kiosk(facility_id=fac.id, housing_unit_id=unit.id, name="k", secret_hash=hash_password("k" * 12))
        closure = Closure(facility_id=fac.id, starts_at=now + timedelta(days=30),
                          ends_at=now + timedelta(days=31), reason="count")
        s.add_all([resident, kiosk, closure])
        await s.flush()
        quote = build_quote(billing_mode="per_visit", visit_type="social", length_minutes=30, price_cents=500,
                            per_minute_cents=0, fees=[]).as_dict()
        start = now + timedelta(days=2)
        visit = Visit(facility_id=fac.id, housing_unit_id=unit.id, resident_id=resident.id, booker_id=visitor.id,
                      visit_type="social", starts_at=start, ends_at=start + timedelta(minutes=30),
                      length_minutes=30, status="scheduled", billing_mode="per_visit", price_cents=500,
                      fees_cents=0, total_cents=500, quote=quote, created_at=now, updated_at=now)
        access = AccessRequest(visitor_id=visitor.id, facility_id=fac.id, status="approved", created_at=now)
        bar = BarVerification(attorney_id=attorney.id, facility_id=fac.id, bar_number="B-1", bar_state="IL",
                              status="pending", created_at=now)
        s.add_all([visit, access, bar])
        await s.flush()
        note = KioskNotification(housing_unit_id=unit.id, resident_id=resident.id, visit_id=visit.id,
                                 kind="booked", message="booked", created_at=now)
        credit = CreditRequest(visitor_id=visitor.id, visit_id=visit.id, description="no video", filed_at=now,
                               decide_by=now + timedelta(hours=72))
        s.add_all([note, credit])
        await s.flush()
        return {"facility_id": fac.id, "unit_id": unit.id, "housing_unit_id": unit.id, "resident_id": resident.id,
                "kiosk_id": kiosk.id, "closure_id": closure.id, "visit_id": visit.id, "request_id": access.id,
                "access_request_id": access.id, "verification_id": bar.id, "notification_id": note.id,
                "credit_request_id": credit.id, "visitor_id": visitor.id}
