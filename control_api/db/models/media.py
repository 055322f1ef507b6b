"""The media plane as the control plane sees it: node leases and room sessions (S5, S6, M8)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, fk_column
from control_api.db.types import UTCDateTime


class MediaNode(Base):
    """A media node's lease, renewed by its heartbeat; `id` is per process start (a restart is a new node)."""

    __tablename__ = "media_nodes"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lost_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MediaSession(Base):
    """One room of a visit on one media node: its connected time (both present, media flowing),
    kept current by heartbeats so that a crash loses at most one heartbeat of it (S6, M8)."""

    __tablename__ = "media_sessions"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    visit_id: Mapped[str] = fk_column("visits.id")
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    state: Mapped[str] = mapped_column(String(16))  # live | ended | lost
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    connected_seconds: Mapped[int] = mapped_column(Integer, default=0)
