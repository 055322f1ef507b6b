"""Visitor access requests (V1) and attorney Bar verification (V2), per facility."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.db.models import AccessRequest, BarVerification, User
from control_api.problems import conflict, not_found, unprocessable
from control_api.routes.common import Reason, Strict, facility_for, same_facility
from control_api.services.uploads import photo_id_path

routes = ApiRoutes()
TAGS = ("access",)
ADMINS = {Role.ADMIN, Role.OPERATOR}
VISITORS = {Role.VISITOR, Role.ATTORNEY}


class Applicant(BaseModel):
    """What the reviewing admin compares with the photo ID (V1). Never shown to other visitors."""

    legal_name: str
    role: str
    email: str
    date_of_birth: date | None
    postal_address: str | None
    phone: str | None
    has_photo_id: bool
    bar_number: str | None
    bar_state: str | None

    @classmethod
    def of(cls, u: User) -> Applicant:
        return cls(legal_name=u.legal_name, role=u.role, email=u.email, date_of_birth=u.date_of_birth,
                   postal_address=u.postal_address, phone=u.phone, has_photo_id=u.photo_id_file is not None,
                   bar_number=u.bar_number, bar_state=u.bar_state)


class AccessRequestOut(BaseModel):
    id: str
    visitor_id: str
    visitor_name: str | None = None
    facility_id: str
    status: str
    reason: str | None
    created_at: datetime
    decided_at: datetime | None
    applicant: Applicant | None = Field(default=None, description="for the facility's reviewers only")

    @classmethod
    def of(cls, a: AccessRequest, user: User | None = None) -> AccessRequestOut:
        return cls(id=a.id, visitor_id=a.visitor_id, visitor_name=user.legal_name if user else None,
                   facility_id=a.facility_id, status=a.status, reason=a.reason, created_at=a.created_at,
                   decided_at=a.decided_at, applicant=Applicant.of(user) if user else None)


class StatusQuery(BaseModel):
    status: Literal["pending", "approved", "denied"] | None = None


class BarStatusQuery(BaseModel):
    status: Literal["pending", "verified", "rejected"] | None = None


class AccessDecision(Strict):
    decision: Literal["approve", "deny"]
    reason: Reason | None = None

    @model_validator(mode="after")
    def _reason_for_denial(self) -> AccessDecision:
        if self.decision == "deny" and not self.reason:
            raise ValueError("a denial must give a reason (rule V1)")
        return self


async def _me(req: ApiRequest[Any, Any]) -> User:
    """The caller's row, locked: two requests sent at once cannot both pass the one-at-a-time check."""
    user = await req.session.get(User, req.principal.id, with_for_update=True)
    if user is None or not user.active:
        raise not_found("account")
    return user


@routes.post("/v1/facilities/{facility_id}/access-requests", summary="Ask a facility for visiting access",
             roles=VISITORS, tags=TAGS, response=AccessRequestOut, status=201, errors=(409,))
async def request_access(req: ApiRequest[Any, Any]) -> AccessRequestOut:
    """V1: with a photo ID on file; one open (pending or approved) request per facility; a denied
    visitor may apply again."""
    facility = await facility_for(req, req.path("facility_id"))
    user = await _me(req)
    if user.email_confirmed_at is None:
        raise unprocessable("confirm your email address first (the link in the mail sent at sign-up; "
                            "POST /v1/me/confirmation-email sends a new one)", slug="email-not-confirmed")
    if not user.photo_id_file:
        raise unprocessable("upload a photo ID first (PUT /v1/me/photo-id; rule V1)", slug="photo-id-required")
    open_request = await req.session.scalar(select(AccessRequest).where(
        AccessRequest.visitor_id == user.id, AccessRequest.facility_id == facility.id,
        AccessRequest.status.in_(("pending", "approved"))))
    if open_request is not None:
        raise conflict(f"you already have a {open_request.status} access request here", slug="already-requested")
    access = AccessRequest(visitor_id=user.id, facility_id=facility.id, status="pending", created_at=req.now)
    req.session.add(access)
    await req.session.flush()
    return AccessRequestOut.of(access)


@routes.get("/v1/me/access-requests", summary="List my access requests", roles=VISITORS, tags=TAGS,
            response=list[AccessRequestOut])
async def my_access_requests(req: ApiRequest[Any, Any]) -> list[AccessRequestOut]:
    rows = await req.session.scalars(select(AccessRequest).where(AccessRequest.visitor_id == req.principal.id)
                                     .order_by(AccessRequest.created_at.desc()))
    return [AccessRequestOut.of(a) for a in rows.all()]


@routes.get("/v1/facilities/{facility_id}/access-requests", summary="List access requests to review",
            roles=ADMINS, tags=TAGS, query=StatusQuery, response=list[AccessRequestOut])
async def list_access_requests(req: ApiRequest[Any, StatusQuery]) -> list[AccessRequestOut]:
    facility = await facility_for(req, req.path("facility_id"))
    stmt = (select(AccessRequest, User).join(User, User.id == AccessRequest.visitor_id)
            .where(AccessRequest.facility_id == facility.id))
    if req.query.status:
        stmt = stmt.where(AccessRequest.status == req.query.status)
    rows = await req.session.execute(stmt.order_by(AccessRequest.created_at, AccessRequest.id))
    return [AccessRequestOut.of(a, user) for a, user in rows.all()]


async def _access_request(req: ApiRequest[Any, Any], *, lock: bool = False) -> AccessRequest:
    facility = await facility_for(req, req.path("facility_id"))
    access = await req.session.get(AccessRequest, req.path("request_id"), with_for_update=True if lock else None)
    if access is None:
        raise not_found("access request")
    same_facility(req, access.facility_id, facility.id, "access request")
    return access


@routes.post("/v1/facilities/{facility_id}/access-requests/{request_id}/decision",
             summary="Approve or deny an access request", roles=ADMINS, tags=TAGS, body=AccessDecision,
             response=AccessRequestOut, errors=(409,))
async def decide_access(req: ApiRequest[AccessDecision, Any]) -> AccessRequestOut:
    """V1: a denial carries its reason, which the visitor sees. Locked, so two admins cannot both decide."""
    access = await _access_request(req, lock=True)
    if access.status != "pending":
        raise conflict(f"this request was already {access.status}", slug="already-decided")
    access.status = "approved" if req.body.decision == "approve" else "denied"
    access.reason = req.body.reason
    access.decided_by = req.principal.id
    access.decided_at = req.now
    return AccessRequestOut.of(access, await req.session.get(User, access.visitor_id))


@routes.get("/v1/facilities/{facility_id}/access-requests/{request_id}/photo-id",
            summary="View the applicant's photo ID", roles=ADMINS, tags=TAGS, response_content_type="image/*")
async def view_photo_id(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    """Only the facility's admins (and operators) see a photo ID, and only for a request to them."""
    access = await _access_request(req)
    user = await req.session.get(User, access.visitor_id)
    if user is None or not user.photo_id_file:
        raise not_found("photo ID")
    path = photo_id_path(req.ctx.settings.uploads_dir, user.photo_id_file)
    if not path.is_file():
        raise not_found("photo ID")
    return web.Response(body=path.read_bytes(), content_type=user.photo_id_content_type or "application/octet-stream",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})


# ------------------------------------------------------------------ Bar verification (V2)


class BarVerificationOut(BaseModel):
    id: str
    attorney_id: str
    facility_id: str
    bar_number: str
    bar_state: str
    status: str
    reason: str | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, b: BarVerification) -> BarVerificationOut:
        return cls(id=b.id, attorney_id=b.attorney_id, facility_id=b.facility_id, bar_number=b.bar_number,
                   bar_state=b.bar_state, status=b.status, reason=b.reason, created_at=b.created_at,
                   decided_at=b.decided_at)


class BarDecision(Strict):
    decision: Literal["verify", "reject"]
    reason: Reason | None = None

    @model_validator(mode="after")
    def _reason_for_rejection(self) -> BarDecision:
        if self.decision == "reject" and not self.reason:
            raise ValueError("a rejection must give a reason")
        return self


@routes.post("/v1/facilities/{facility_id}/bar-verifications", summary="Ask a facility to verify my Bar number",
             roles={Role.ATTORNEY}, tags=TAGS, response=BarVerificationOut, status=201, errors=(409,))
async def request_bar_verification(req: ApiRequest[Any, Any]) -> BarVerificationOut:
    """V2: the Bar number and state on the attorney's account, verified by each facility separately;
    a rejected attorney may ask again."""
    facility = await facility_for(req, req.path("facility_id"))
    user = await _me(req)
    if user.email_confirmed_at is None:
        raise unprocessable("confirm your email address first (the link in the mail sent at sign-up; "
                            "POST /v1/me/confirmation-email sends a new one)", slug="email-not-confirmed")
    if not user.bar_number or not user.bar_state:
        raise unprocessable("your account has no Bar number (rule V2)", slug="no-bar-number")
    existing = await req.session.scalar(select(BarVerification).where(
        BarVerification.attorney_id == user.id, BarVerification.facility_id == facility.id,
        BarVerification.status.in_(("pending", "verified"))))
    if existing is not None:
        raise conflict(f"your Bar number is already {existing.status} here", slug="already-requested")
    verification = BarVerification(attorney_id=user.id, facility_id=facility.id, bar_number=user.bar_number,
                                   bar_state=user.bar_state, status="pending", created_at=req.now)
    req.session.add(verification)
    await req.session.flush()
    return BarVerificationOut.of(verification)


@routes.get("/v1/me/bar-verifications", summary="List my Bar verifications", roles={Role.ATTORNEY}, tags=TAGS,
            response=list[BarVerificationOut])
async def my_bar_verifications(req: ApiRequest[Any, Any]) -> list[BarVerificationOut]:
    rows = await req.session.scalars(select(BarVerification).where(BarVerification.attorney_id == req.principal.id)
                                     .order_by(BarVerification.created_at.desc()))
    return [BarVerificationOut.of(b) for b in rows.all()]


@routes.get("/v1/facilities/{facility_id}/bar-verifications", summary="List Bar verifications to review",
            roles=ADMINS, tags=TAGS, query=BarStatusQuery, response=list[BarVerificationOut])
async def list_bar_verifications(req: ApiRequest[Any, BarStatusQuery]) -> list[BarVerificationOut]:
    facility = await facility_for(req, req.path("facility_id"))
    stmt = select(BarVerification).where(BarVerification.facility_id == facility.id)
    if req.query.status:
        stmt = stmt.where(BarVerification.status == req.query.status)
    rows = await req.session.scalars(stmt.order_by(BarVerification.created_at, BarVerification.id))
    return [BarVerificationOut.of(b) for b in rows.all()]


@routes.post("/v1/facilities/{facility_id}/bar-verifications/{verification_id}/decision",
             summary="Verify or reject an attorney's Bar number", roles=ADMINS, tags=TAGS, body=BarDecision,
             response=BarVerificationOut, errors=(409,))
async def decide_bar_verification(req: ApiRequest[BarDecision, Any]) -> BarVerificationOut:
    facility = await facility_for(req, req.path("facility_id"))
    verification = await req.session.get(BarVerification, req.path("verification_id"), with_for_update=True)
    if verification is None:
        raise not_found("Bar verification")
    same_facility(req, verification.facility_id, facility.id, "Bar verification")
    if verification.status != "pending":
        raise conflict(f"this verification was already {verification.status}", slug="already-decided")
    verification.status = "verified" if req.body.decision == "verify" else "rejected"
    verification.reason = req.body.reason
    verification.decided_by = req.principal.id
    verification.decided_at = req.now
    return BarVerificationOut.of(verification)
