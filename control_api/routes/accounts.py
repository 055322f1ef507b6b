"""Accounts: visitor and attorney sign-up and email confirmation, profile and photo ID upload.

Signing in, sessions, passwords and the second factor are in `routes/auth.py`."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator
from sqlalchemy import select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.auth import USER_ROLES, Role, hash_password
from control_api.db.models import User
from control_api.problems import ProblemError, bad_request, not_found, unauthorized
from control_api.services import account_mail, sign_in
from control_api.services.uploads import (
    PHOTO_ID_TYPES,
    ImageRefusedError,
    looks_like,
    photo_id_path,
    remove_photo_id,
    sanitized_image,
    store_photo_id,
)

routes = ApiRoutes()
TAGS = ("accounts",)

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Password = Annotated[str, StringConstraints(min_length=10, max_length=200)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()\-]{7,20}$")]
BarNumber = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9\-]{3,32}$")]
LANGUAGES = ("en", "es")
Language = Literal["en", "es"]
UsState = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(Strict):
    role: Literal["visitor", "attorney"] = "visitor"
    email: EmailStr
    password: Password
    legal_name: Name
    postal_address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)]
    date_of_birth: date
    phone: Phone
    bar_number: BarNumber | None = Field(default=None, description="attorneys only")
    bar_state: UsState | None = Field(default=None, description="attorneys only: issuing state")
    language: Language | None = Field(default=None, description="the language of the pages and mail")

    @model_validator(mode="after")
    def _attorney_fields(self) -> SignUp:
        if self.role == "attorney" and (not self.bar_number or not self.bar_state):
            raise ValueError("attorneys must give bar_number and bar_state")
        if self.role == "visitor" and (self.bar_number or self.bar_state):
            raise ValueError("bar_number and bar_state are for attorney accounts")
        if self.date_of_birth >= date.today() or self.date_of_birth.year < 1900:
            raise ValueError("date_of_birth is not plausible")
        return self


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    facility_id: str | None
    legal_name: str
    postal_address: str | None
    date_of_birth: date | None
    phone: str | None
    bar_number: str | None
    bar_state: str | None
    has_photo_id: bool
    email_confirmed: bool
    second_factor: bool = Field(description="signs in with an authenticator app code as well as the password")
    language: Language | None = Field(description="the language the pages use for this account")
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, role=user.role, facility_id=user.facility_id,
                   legal_name=user.legal_name, postal_address=user.postal_address,
                   date_of_birth=user.date_of_birth, phone=user.phone, bar_number=user.bar_number,
                   bar_state=user.bar_state, has_photo_id=user.photo_id_file is not None,
                   email_confirmed=user.email_confirmed_at is not None, second_factor=user.totp_secret is not None,
                   language=user.language if user.language in LANGUAGES else None, created_at=user.created_at)


class ProfileUpdate(Strict):
    legal_name: Name | None = None
    postal_address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)] | None = None
    phone: Phone | None = None
    language: Language | None = None


def normalise_email(email: str) -> str:
    return email.strip().lower()


class SignUpAccepted(BaseModel):
    status: Literal["check-your-email"] = "check-your-email"
    email: str
    detail: str = ("If this address can be used, a confirmation link is on its way. Open it to confirm "
                   "your email, then sign in.")


@routes.post("/v1/accounts", summary="Sign up as a visitor or attorney", roles=PUBLIC, tags=TAGS,
             body=SignUp, response=SignUpAccepted, status=202)
async def sign_up(req: ApiRequest[SignUp, Any]) -> SignUpAccepted:
    """The answer is the same whether or not the address already has an account, so sign-up cannot
    be used to find out who is a member; the address's holder gets a mail either way (a link to
    confirm a new account, or a note that someone tried to sign up again)."""
    b = req.body
    email = normalise_email(b.email)
    password_hash = await asyncio.to_thread(hash_password, b.password)  # hashed either way: same timing
    existing = await req.session.scalar(select(User).where(User.email == email))
    if existing is not None:
        if existing.active:
            account_mail.sign_up_attempt_on_existing(req.session, req.ctx.settings, to=existing.email,
                                                     name=existing.legal_name, now=req.now)
        return SignUpAccepted(email=email)
    user = User(email=email, password_hash=password_hash, role=b.role, legal_name=b.legal_name,
                postal_address=b.postal_address, date_of_birth=b.date_of_birth, phone=b.phone,
                bar_number=b.bar_number, bar_state=b.bar_state, language=b.language, created_at=req.now)
    req.session.add(user)
    await req.session.flush()
    token = await sign_in.issue_account_token(req.session, user, "confirm-email", sign_in.CONFIRM_EMAIL_TTL, req.now)
    account_mail.confirm_email(req.session, req.ctx.settings, to=email, name=user.legal_name, token=token,
                               ttl=sign_in.CONFIRM_EMAIL_TTL, now=req.now)
    return SignUpAccepted(email=email)


class MailedToken(Strict):
    token: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=200)]


class Confirmed(BaseModel):
    status: Literal["confirmed"] = "confirmed"
    email: str


@routes.post("/v1/auth/confirm-email", summary="Confirm my email with the mailed link's token", roles=PUBLIC,
             tags=TAGS, body=MailedToken, response=Confirmed)
async def confirm_email(req: ApiRequest[MailedToken, Any]) -> Confirmed:
    user = await sign_in.redeem_account_token(req.session, "confirm-email", req.body.token, req.now)
    if user is None:
        raise bad_request("this confirmation link is not valid: it was used, replaced by a newer one, or expired "
                          "(sign in and ask for a new one)", slug="invalid-or-expired-token")
    if user.email_confirmed_at is None:
        user.email_confirmed_at = req.now
    return Confirmed(email=user.email)


class MailQueued(BaseModel):
    status: Literal["sent", "already-sent-recently", "already-confirmed"]


RESEND_AFTER = timedelta(seconds=60)


@routes.post("/v1/me/confirmation-email", summary="Send my email confirmation link again",
             roles={Role.VISITOR, Role.ATTORNEY}, tags=TAGS, response=MailQueued, status=202)
async def resend_confirmation(req: ApiRequest[Any, Any]) -> MailQueued:
    user = await current_user(req)
    if user.email_confirmed_at is not None:
        return MailQueued(status="already-confirmed")
    last = await sign_in.last_token_at(req.session, user, "confirm-email")
    if last is not None and req.now - last < RESEND_AFTER:
        return MailQueued(status="already-sent-recently")
    token = await sign_in.issue_account_token(req.session, user, "confirm-email", sign_in.CONFIRM_EMAIL_TTL, req.now)
    account_mail.confirm_email(req.session, req.ctx.settings, to=user.email, name=user.legal_name, token=token,
                               ttl=sign_in.CONFIRM_EMAIL_TTL, now=req.now)
    return MailQueued(status="sent")


async def current_user(req: ApiRequest[Any, Any]) -> User:
    user = await req.session.get(User, req.principal.id)
    if user is None or not user.active:
        raise unauthorized("this account no longer exists or is disabled")
    return user


@routes.get("/v1/me", summary="Read my account", roles=USER_ROLES, tags=TAGS, response=UserOut)
async def read_me(req: ApiRequest[Any, Any]) -> UserOut:
    return UserOut.of(await current_user(req))


@routes.patch("/v1/me", summary="Update my contact details", roles=USER_ROLES, tags=TAGS,
              body=ProfileUpdate, response=UserOut)
async def update_me(req: ApiRequest[ProfileUpdate, Any]) -> UserOut:
    user = await current_user(req)
    changes = req.body.model_dump(exclude_none=True)
    if not changes:
        raise bad_request("nothing to change", slug="empty-update")
    for name, value in changes.items():
        setattr(user, name, value)
    return UserOut.of(user)


@routes.put("/v1/me/photo-id", summary="Upload my photo ID", roles={Role.VISITOR, Role.ATTORNEY}, tags=TAGS,
            raw_body=PHOTO_ID_TYPES, raw_max_bytes=5 * 1024 * 1024, response=UserOut, errors=(413, 415))
async def upload_photo_id(req: ApiRequest[Any, Any]) -> UserOut:
    """Stored privately (outside any served folder); only the facility's admins can view it (V1)."""
    data = req.raw or b""
    ctype = req.request.content_type
    if len(data) > req.ctx.settings.photo_id_max_bytes:
        raise ProblemError(413, "payload-too-large",
                           f"photo IDs are limited to {req.ctx.settings.photo_id_max_bytes} bytes")
    if not looks_like(ctype, data):
        raise bad_request(f"the file is not a {ctype} image", slug="not-an-image")
    try:  # V1: only pixels are stored (metadata such as a GPS position, and anything appended, dropped)
        data = await asyncio.to_thread(sanitized_image, ctype, data)
    except ImageRefusedError as exc:
        raise bad_request(str(exc), slug="not-an-image") from exc
    user = await current_user(req)
    uploads = req.ctx.settings.uploads_dir
    name = store_photo_id(uploads, data)
    old = user.photo_id_file

    async def drop_new() -> None:
        remove_photo_id(uploads, name)

    async def drop_old() -> None:
        if old:
            remove_photo_id(uploads, old)

    req.on_rollback.append(drop_new)
    req.after_commit.append(drop_old)
    user.photo_id_file = name
    user.photo_id_content_type = ctype
    return UserOut.of(user)


@routes.get("/v1/me/photo-id", summary="View my photo ID", roles={Role.VISITOR, Role.ATTORNEY}, tags=TAGS,
            response_content_type="image/*")
async def view_my_photo_id(req: ApiRequest[Any, Any]) -> web.StreamResponse:
    """The account holder sees the photo ID on file (as stored: pixels only), so the account page can
    show what the facilities will review (V1). Never cached."""
    user = await current_user(req)
    path = photo_id_path(req.ctx.settings.uploads_dir, user.photo_id_file) if user.photo_id_file else None
    if path is None or not path.is_file():
        raise not_found("photo ID")
    return web.Response(body=path.read_bytes(), content_type=user.photo_id_content_type or "application/octet-stream",
                        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
