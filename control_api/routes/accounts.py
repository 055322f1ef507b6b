"""Accounts: visitor and attorney sign-up, login, kiosk login, profile and photo ID upload."""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator
from sqlalchemy import func, select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.auth import USER_ROLES, Principal, Role, hash_password, verify_password_or_dummy
from control_api.db.models import Kiosk, User
from control_api.problems import ProblemError, bad_request, conflict, unauthorized
from control_api.services.uploads import (
    PHOTO_ID_TYPES,
    ImageRefusedError,
    looks_like,
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

    @model_validator(mode="after")
    def _attorney_fields(self) -> SignUp:
        if self.role == "attorney" and (not self.bar_number or not self.bar_state):
            raise ValueError("attorneys must give bar_number and bar_state")
        if self.role == "visitor" and (self.bar_number or self.bar_state):
            raise ValueError("bar_number and bar_state are for attorney accounts")
        if self.date_of_birth >= date.today() or self.date_of_birth.year < 1900:
            raise ValueError("date_of_birth is not plausible")
        return self


class Login(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class KioskLogin(Strict):
    kiosk_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    secret: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    role: str
    subject_id: str


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
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, role=user.role, facility_id=user.facility_id,
                   legal_name=user.legal_name, postal_address=user.postal_address,
                   date_of_birth=user.date_of_birth, phone=user.phone, bar_number=user.bar_number,
                   bar_state=user.bar_state, has_photo_id=user.photo_id_file is not None,
                   created_at=user.created_at)


class ProfileUpdate(Strict):
    legal_name: Name | None = None
    postal_address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=500)] | None = None
    phone: Phone | None = None


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def email_taken(req: ApiRequest[Any, Any], email: str) -> bool:
    return (await req.session.scalar(select(func.count()).select_from(User).where(User.email == email))) != 0


@routes.post("/v1/accounts", summary="Sign up as a visitor or attorney", roles=PUBLIC, tags=TAGS,
             body=SignUp, response=UserOut, status=201, errors=(409,))
async def sign_up(req: ApiRequest[SignUp, Any]) -> UserOut:
    b = req.body
    email = normalise_email(b.email)
    if await email_taken(req, email):
        raise conflict("an account with this email already exists", slug="email-taken")
    user = User(email=email, password_hash=hash_password(b.password), role=b.role, legal_name=b.legal_name,
                postal_address=b.postal_address, date_of_birth=b.date_of_birth, phone=b.phone,
                bar_number=b.bar_number, bar_state=b.bar_state, created_at=req.now)
    req.session.add(user)
    await req.session.flush()
    return UserOut.of(user)


@routes.post("/v1/auth/login", summary="Sign in with email and password", roles=PUBLIC, tags=TAGS,
             body=Login, response=TokenOut)
async def login(req: ApiRequest[Login, Any]) -> TokenOut:
    user = await req.session.scalar(select(User).where(User.email == normalise_email(req.body.email)))
    ok = verify_password_or_dummy(user.password_hash if user else None, req.body.password)
    if user is None or not ok or not user.active:
        raise unauthorized("email or password is wrong")
    principal = Principal(id=user.id, role=Role(user.role), facility_id=user.facility_id)
    token, expires = req.ctx.access_tokens.issue(principal, req.now)
    return TokenOut(access_token=token, expires_at=expires, role=user.role, subject_id=user.id)


@routes.post("/v1/auth/kiosk", summary="Sign in as a kiosk device", roles=PUBLIC, tags=TAGS,
             body=KioskLogin, response=TokenOut)
async def kiosk_login(req: ApiRequest[KioskLogin, Any]) -> TokenOut:
    kiosk = await req.session.get(Kiosk, req.body.kiosk_id)
    ok = verify_password_or_dummy(kiosk.secret_hash if kiosk else None, req.body.secret)
    if kiosk is None or not ok or not kiosk.active:
        raise unauthorized("kiosk id or secret is wrong")
    principal = Principal(id=kiosk.id, role=Role.KIOSK, facility_id=kiosk.facility_id,
                          housing_unit_id=kiosk.housing_unit_id)
    token, expires = req.ctx.access_tokens.issue(principal, req.now)
    return TokenOut(access_token=token, expires_at=expires, role="kiosk", subject_id=kiosk.id)


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
