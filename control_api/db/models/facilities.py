"""A facility's configuration (rules A1-A7): the facility, housing units, visitation windows,
closures, the visit options it offers and its fees."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class Facility(Base):
    __tablename__ = "facilities"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))  # A1, an IANA zone
    booking_horizon_days: Mapped[int] = mapped_column(Integer, default=14)  # A5
    min_lead_minutes: Mapped[int] = mapped_column(Integer, default=60)  # A5
    cancellation_notice_hours: Mapped[int] = mapped_column(Integer, default=24)  # A6
    weekly_visit_limit: Mapped[int] = mapped_column(Integer, default=7)  # A7
    review_mode: Mapped[str] = mapped_column(String(16), default="auto")  # A7: auto | manual
    retention_days: Mapped[int] = mapped_column(Integer, default=365)  # A8
    billing_mode: Mapped[str] = mapped_column(String(16), default="per_visit")  # M8
    size_tier: Mapped[str] = mapped_column(String(32), default="prison")  # M8
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    housing_units: Mapped[list[HousingUnit]] = relationship(back_populates="facility", lazy="raise")


class HousingUnit(Base):
    __tablename__ = "housing_units"
    __table_args__ = (UniqueConstraint("facility_id", "name"),)

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    name: Mapped[str] = mapped_column(String(100))
    kiosk_count: Mapped[int] = mapped_column(Integer, default=1)  # A4
    facility: Mapped[Facility] = relationship(back_populates="housing_units", lazy="raise")


class VisitationWindow(Base):
    """A2: a weekly window in local wall-clock time, e.g. Monday 08:00-11:00."""

    __tablename__ = "visitation_windows"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday"),
        CheckConstraint("start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440", name="span"),
    )

    id: Mapped[str] = id_column()
    housing_unit_id: Mapped[str] = fk_column("housing_units.id")
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday (Python's convention)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class Closure(Base):
    """A2: a dated closure removing visitation (whole facility, or one housing unit)."""

    __tablename__ = "closures"

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    housing_unit_id: Mapped[str | None] = fk_column("housing_units.id", nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200))


class SessionOption(Base):
    """A3: a length offered per visit type and its price (per visit, or per minute under M8)."""

    __tablename__ = "session_options"
    __table_args__ = (UniqueConstraint("facility_id", "visit_type", "length_minutes"),)

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    visit_type: Mapped[str] = mapped_column(String(16))  # social | privileged
    length_minutes: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer, default=0)  # per_visit mode
    per_minute_cents: Mapped[int] = mapped_column(Integer, default=0)  # per_minute mode


class FeeItem(Base):
    """M7: an itemised, non-creditable fee or tax shown in every quote (default: none)."""

    __tablename__ = "fee_items"

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))  # fee | tax
    amount_cents: Mapped[int] = mapped_column(Integer, default=0)  # flat amount
    rate_basis_points: Mapped[int] = mapped_column(Integer, default=0)  # tax: share of price
