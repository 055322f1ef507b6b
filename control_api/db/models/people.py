"""People and devices: users who sign in, kiosks, residents, visitors' access requests (V1) and
attorneys' Bar verifications (V2)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class User(Base):
    """Anyone who signs in: visitors, attorneys, facility staff and operators."""

    __tablename__ = "users"

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), index=True)
    facility_id: Mapped[str | None] = fk_column("facilities.id", nullable=True)  # staff only (V3)
    legal_name: Mapped[str] = mapped_column(String(200))
    postal_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    photo_id_file: Mapped[str | None] = mapped_column(String(100), nullable=True)  # name in uploads dir
    photo_id_content_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bar_number: Mapped[str | None] = mapped_column(String(32), nullable=True)  # attorneys (V2)
    bar_state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Accounts (issue 12): a confirmed mailbox, and an optional RFC 6238 second factor.
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # set once confirmed
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # during enrolment
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # no code is accepted twice
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # the pages' language (en, es)


class Kiosk(Base):
    """A facility device bound to one housing unit; signs in with its own secret."""

    __tablename__ = "kiosks"

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    housing_unit_id: Mapped[str] = fk_column("housing_units.id")
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("facility_id", "booking_number"),)

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    housing_unit_id: Mapped[str] = fk_column("housing_units.id")
    booking_number: Mapped[str] = mapped_column(String(32))
    full_name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AccessRequest(Base):
    """V1: a visitor asks a facility for access; staff approve or deny with a reason."""

    __tablename__ = "access_requests"

    id: Mapped[str] = id_column()
    visitor_id: Mapped[str] = fk_column("users.id")
    facility_id: Mapped[str] = fk_column("facilities.id")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | denied
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = fk_column("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BarVerification(Base):
    """V2: a facility's verification of an attorney's Bar number."""

    __tablename__ = "bar_verifications"

    id: Mapped[str] = id_column()
    attorney_id: Mapped[str] = fk_column("users.id")
    facility_id: Mapped[str] = fk_column("facilities.id")
    bar_number: Mapped[str] = mapped_column(String(32))
    bar_state: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | verified | rejected
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = fk_column("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
