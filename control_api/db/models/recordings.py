"""Recordings (R1-R4): a visit's recording, its files and investigators' flags."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class Recording(Base):
    """A recorded social visit: its signed manifest (R2) and its legal hold (R4). Denormalised
    search keys (resident, booker, unit) let investigators find it without joins (R3)."""

    __tablename__ = "recordings"

    visit_id: Mapped[str] = mapped_column(String(36), ForeignKey("visits.id", ondelete="RESTRICT"), primary_key=True)
    facility_id: Mapped[str] = fk_column("facilities.id")
    housing_unit_id: Mapped[str] = fk_column("housing_units.id")
    resident_id: Mapped[str] = fk_column("residents.id")
    booker_id: Mapped[str] = fk_column("users.id")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    signed_manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    legal_hold_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # retention (R4)


class RecordingFile(Base):
    __tablename__ = "recording_files"
    __table_args__ = (UniqueConstraint("visit_id", "name"),)

    id: Mapped[str] = id_column()
    visit_id: Mapped[str] = fk_column("recordings.visit_id")
    name: Mapped[str] = mapped_column(String(100))
    party: Mapped[str] = mapped_column(String(16))  # visitor | resident
    media_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class RecordingFlag(Base):
    """An investigator's note at a moment of a recording (R3)."""

    __tablename__ = "recording_flags"

    id: Mapped[str] = id_column()
    visit_id: Mapped[str] = fk_column("recordings.visit_id")
    at_seconds: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = fk_column("users.id", index=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
