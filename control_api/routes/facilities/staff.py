"""A facility's staff accounts (V3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, StringConstraints
from sqlalchemy import func, select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role, hash_password
from control_api.db.models import User
from control_api.problems import conflict, forbidden
from control_api.routes.common import Strict, Text200, facility_for
from control_api.routes.facilities.scope import ADMINS, TAGS

routes = ApiRoutes()


# ------------------------------------------------------------------ staff (V3)


class StaffIn(Strict):
    email: EmailStr
    legal_name: Text200
    role: Literal["admin", "officer", "investigator"]
    password: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class StaffOut(BaseModel):
    id: str
    email: str
    legal_name: str
    role: str
    facility_id: str | None
    active: bool


@routes.post("/v1/facilities/{facility_id}/staff", summary="Add a staff account", roles=ADMINS, tags=TAGS,
             body=StaffIn, response=StaffOut, status=201, errors=(409,))
async def create_staff(req: ApiRequest[StaffIn, Any]) -> StaffOut:
    """Staff belong to exactly one facility (V3); a facility admin adds staff only to their own."""
    facility = await facility_for(req, req.path("facility_id"))
    if req.principal.role is Role.ADMIN and req.principal.facility_id != facility.id:
        raise forbidden("admins add staff only to their own facility")
    email = req.body.email.strip().lower()
    taken = await req.session.scalar(select(func.count()).select_from(User).where(User.email == email))
    if taken:
        raise conflict("an account with this email already exists", slug="email-taken")
    user = User(email=email, password_hash=hash_password(req.body.password), role=req.body.role,
                facility_id=facility.id, legal_name=req.body.legal_name, created_at=req.now,
                email_confirmed_at=req.now)  # the admin vouches for a staff member's address
    req.session.add(user)
    await req.session.flush()
    return StaffOut(id=user.id, email=user.email, legal_name=user.legal_name, role=user.role,
                    facility_id=user.facility_id, active=user.active)


@routes.get("/v1/facilities/{facility_id}/staff", summary="List staff accounts", roles=ADMINS, tags=TAGS,
            response=list[StaffOut])
async def list_staff(req: ApiRequest[Any, Any]) -> list[StaffOut]:
    facility = await facility_for(req, req.path("facility_id"))
    rows = await req.session.scalars(select(User).where(User.facility_id == facility.id).order_by(User.email))
    return [StaffOut(id=u.id, email=u.email, legal_name=u.legal_name, role=u.role, facility_id=u.facility_id,
                     active=u.active) for u in rows.all()]
