"""Demo data for `openvisit serve --demo` and `openvisit demo`: one facility, ready to book.

Idempotent: running it again finds the demo facility and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from control_api.auth import hash_password
from control_api.db.engine import make_engine, make_sessionmaker
from control_api.db.models import (
    AccessRequest,
    BarVerification,
    Facility,
    HousingUnit,
    Kiosk,
    Resident,
    SessionOption,
    User,
    VisitationWindow,
)
from control_api.services.uploads import store_photo_id
from openvisit.settings import Settings

DEMO_FACILITY = "Demo County Jail"
DEMO_PASSWORD = "demo-password"
DEMO_KIOSK_SECRET = "demo-kiosk-secret"
# A 1x1 PNG standing in for an uploaded photo ID.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


async def create_operator(settings: Settings, *, email: str, name: str, password: str) -> None:
    engine = make_engine(settings.effective_database_url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            if await session.scalar(select(User).where(User.email == email.lower())):
                raise SystemExit(f"an account with email {email} already exists")
            session.add(User(email=email.lower(), password_hash=hash_password(password), role="operator",
                             legal_name=name, created_at=datetime.now(UTC), email_confirmed_at=datetime.now(UTC)))
    finally:
        await engine.dispose()


async def seed_demo(settings: Settings) -> dict[str, str]:
    """Create the demo facility and one account per role; returns role -> sign-in name."""
    engine = make_engine(settings.effective_database_url)
    now = datetime.now(UTC)
    accounts = {
        "operator": "operator@demo.openvisit.org",
        "admin": "admin@demo.openvisit.org",
        "officer": "officer@demo.openvisit.org",
        "investigator": "investigator@demo.openvisit.org",
        "visitor": "visitor@demo.openvisit.org",
        "attorney": "attorney@demo.openvisit.org",
    }
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            facility = await session.scalar(select(Facility).where(Facility.name == DEMO_FACILITY))
            if facility is None:
                facility = Facility(name=DEMO_FACILITY, timezone="America/Chicago", booking_horizon_days=28,
                                    min_lead_minutes=15, cancellation_notice_hours=24, weekly_visit_limit=10,
                                    review_mode="auto", retention_days=365, billing_mode="per_visit",
                                    size_tier="jail_100_349", created_at=now)
                session.add(facility)
                await session.flush()
                units = [HousingUnit(facility_id=facility.id, name="A Block", kiosk_count=2),
                         HousingUnit(facility_id=facility.id, name="B Block", kiosk_count=1)]
                session.add_all(units)
                await session.flush()
                for unit in units:
                    session.add_all(VisitationWindow(housing_unit_id=unit.id, weekday=d, start_minute=8 * 60,
                                                     end_minute=21 * 60) for d in range(7))
                session.add_all([
                    SessionOption(facility_id=facility.id, visit_type="social", length_minutes=20, price_cents=500),
                    SessionOption(facility_id=facility.id, visit_type="social", length_minutes=30, price_cents=750),
                    SessionOption(facility_id=facility.id, visit_type="privileged", length_minutes=30,
                                  price_cents=0),
                    SessionOption(facility_id=facility.id, visit_type="privileged", length_minutes=60,
                                  price_cents=0),
                ])
                session.add_all([
                    Resident(facility_id=facility.id, housing_unit_id=units[0].id, booking_number="D-1001",
                             full_name="Jordan Rivera"),
                    Resident(facility_id=facility.id, housing_unit_id=units[0].id, booking_number="D-1002",
                             full_name="Casey Morgan"),
                    Resident(facility_id=facility.id, housing_unit_id=units[1].id, booking_number="D-2001",
                             full_name="Taylor Brooks"),
                ])
                kiosk = Kiosk(facility_id=facility.id, housing_unit_id=units[0].id, name="A Block kiosk 1",
                              secret_hash=hash_password(DEMO_KIOSK_SECRET))
                session.add(kiosk)
                pw = hash_password(DEMO_PASSWORD)
                users: dict[str, User] = {}
                for role, email in accounts.items():
                    staff = role in ("admin", "officer", "investigator")
                    user = User(email=email, password_hash=pw, role=role, legal_name=f"Demo {role.title()}",
                                facility_id=facility.id if staff else None, created_at=now, email_confirmed_at=now)
                    if role in ("visitor", "attorney"):
                        user.postal_address = "100 Main Street, Springfield, IL 62701"
                        user.date_of_birth = date(1985, 4, 12)
                        user.phone = "+1 217 555 0100"
                        user.photo_id_file = store_photo_id(settings.uploads_dir, _PNG)
                        user.photo_id_content_type = "image/png"
                    if role == "attorney":
                        user.bar_number, user.bar_state = "IL-123456", "IL"
                    session.add(user)
                    users[role] = user
                await session.flush()
                for role in ("visitor", "attorney"):
                    session.add(AccessRequest(visitor_id=users[role].id, facility_id=facility.id, status="approved",
                                              decided_by=users["admin"].id, decided_at=now, created_at=now))
                session.add(BarVerification(attorney_id=users["attorney"].id, facility_id=facility.id,
                                            bar_number="IL-123456", bar_state="IL", status="verified",
                                            decided_by=users["admin"].id, decided_at=now, created_at=now))
                await session.flush()
                kiosk_id = kiosk.id
            else:
                kiosk_id = await session.scalar(select(Kiosk.id).where(Kiosk.facility_id == facility.id)) or "?"
    finally:
        await engine.dispose()
    accounts["kiosk"] = f"kiosk id {kiosk_id}, secret {DEMO_KIOSK_SECRET}"
    accounts["card tokens"] = "tok_visa (succeeds), tok_chargeDeclined (declines)"
    return accounts
