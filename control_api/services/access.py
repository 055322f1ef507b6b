"""Who may book where: approved access (V1) and verified attorneys (V2)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.db.models import AccessRequest, BarVerification


async def has_approved_access(session: AsyncSession, visitor_id: str, facility_id: str) -> bool:
    found = await session.scalar(select(AccessRequest.id).where(
        AccessRequest.visitor_id == visitor_id, AccessRequest.facility_id == facility_id,
        AccessRequest.status == "approved").limit(1))
    return found is not None


async def is_verified_attorney(session: AsyncSession, attorney_id: str, facility_id: str) -> bool:
    found = await session.scalar(select(BarVerification.id).where(
        BarVerification.attorney_id == attorney_id, BarVerification.facility_id == facility_id,
        BarVerification.status == "verified").limit(1))
    return found is not None
