"""Visits (B, S) and what happens to them: events from the media plane and kiosk notices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class Visit(Base):
    """B1: one resident, one facility, one booker, a start, a length and a type that never changes."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_unit_time", "housing_unit_id", "starts_at"),
        Index("ix_visits_resident_time", "resident_id", "starts_at"),
    )

    id: Mapped[str] = id_column()
    facility_id: Mapped[str] = fk_column("facilities.id")
    housing_unit_id: Mapped[str] = fk_column("housing_units.id", index=False)
    resident_id: Mapped[str] = fk_column("residents.id", index=False)
    booker_id: Mapped[str] = fk_column("users.id")
    visit_type: Mapped[str] = mapped_column(String(16))  # social | privileged
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    length_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    billing_mode: Mapped[str] = mapped_column(String(16))
    price_cents: Mapped[int] = mapped_column(Integer)  # creditable part (M2)
    fees_cents: Mapped[int] = mapped_column(Integer)  # non-creditable (M7)
    total_cents: Mapped[int] = mapped_column(Integer)
    quote: Mapped[dict[str, Any]] = mapped_column(JSON)  # the itemised quote the visitor accepted (B6)
    disconnect_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # S4
    ended_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # visitor|facility|operator
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    resident_checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    visitor_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resident_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    media_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    connected_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # S5/S6: when the control plane learned that the media session was lost (a node died or went
    # silent); the visit stays joinable until its end and is `failed` if it never resumes.
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # R1: what went wrong with this visit's recording (write error, refused for lack of space, a
    # segment recovered after a crash); non-empty means the recording is incomplete, shown to staff.
    recording_problems: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class VisitEvent(Base):
    """What the media plane reported about a visit; `event_id` makes reports idempotent."""

    __tablename__ = "visit_events"

    id: Mapped[str] = id_column()
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    visit_id: Mapped[str] = fk_column("visits.id")
    kind: Mapped[str] = mapped_column(String(32))
    participant: Mapped[str | None] = mapped_column(String(16), nullable=True)  # visitor | resident
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class KioskNotification(Base):
    """B7: what the resident sees on the kiosk about booked, moved or cancelled visits."""

    __tablename__ = "kiosk_notifications"

    id: Mapped[str] = id_column()
    housing_unit_id: Mapped[str] = fk_column("housing_units.id")
    resident_id: Mapped[str] = fk_column("residents.id")
    visit_id: Mapped[str] = fk_column("visits.id")
    kind: Mapped[str] = mapped_column(String(16))  # booked | moved | cancelled
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
