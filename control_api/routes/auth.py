"""Signing in and out: passwords, sessions, password change and reset, the second factor (issue 12).

A sign-in opens a session (`auth_sessions`): a short-lived access token names it and a refresh
token renews it. Every request checks the session (control_api/api.py), so signing out, a
password change or a reset ends the other devices' tokens at once. Failed sign-ins are throttled
per account name and per source address (domain/login_throttle.py); the password of a blocked
caller is not even checked.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, EmailStr, Field, StringConstraints
from sqlalchemy import select

from control_api.api import PUBLIC, ApiRequest, ApiRoutes
from control_api.auth import (
    SECOND_FACTOR_ROLES,
    USER_ROLES,
    Principal,
    Role,
    hash_password,
    verify_password_or_dummy,
)
from control_api.db.models import AuthSession, Kiosk, User
from control_api.problems import ProblemError, bad_request, forbidden, not_found, unauthorized
from control_api.routes.accounts import Password, Strict, current_user, normalise_email
from control_api.services import account_mail, sign_in

routes = ApiRoutes()
TAGS = ("sign-in",)
SIGNED_IN = {*USER_ROLES, Role.KIOSK}

Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


class Login(Strict):
    email: EmailStr
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    second_factor_code: Code | None = Field(default=None, description="the 6-digit code from the authenticator app")
    recovery_code: Code | None = Field(default=None, description="a one-time recovery code, instead of the app's code")


class KioskLogin(Strict):
    kiosk_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    secret: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Refresh(Strict):
    refresh_token: Annotated[str, StringConstraints(min_length=16, max_length=200)]


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    refresh_token: str
    session_expires_at: datetime
    role: str
    subject_id: str
    second_factor_enrolment_required: bool = Field(
        default=False, description="staff must set up an authenticator app before anything else")

    @classmethod
    def of(cls, issued: sign_in.Issued) -> TokenOut:
        p = issued.principal
        return cls(access_token=issued.access_token, expires_at=issued.expires_at,
                   refresh_token=issued.refresh_token, session_expires_at=issued.session_expires_at,
                   role=p.role.value, subject_id=p.id, second_factor_enrolment_required=p.enrolling)


def too_many_attempts(wait: timedelta) -> ProblemError:
    seconds = max(1, math.ceil(wait.total_seconds()))
    return ProblemError(429, "too-many-attempts",
                        f"too many failed sign-in attempts: try again in {seconds} seconds, or reset the password",
                        headers={"Retry-After": str(seconds)}, extra={"retry_after_seconds": seconds})


def _source(req: ApiRequest[Any, Any]) -> str | None:
    return req.request.remote


async def _throttled(req: ApiRequest[Any, Any], account: str) -> None:
    async with req.ctx.read_sessions() as session:
        wait = await sign_in.throttle_wait(session, [account, sign_in.source_key(_source(req))], req.now)
    if wait is not None:
        raise too_many_attempts(wait)


async def _failed(req: ApiRequest[Any, Any], account: str, user_id: str | None) -> None:
    async with req.ctx.sessions() as session, session.begin():
        user = await session.get(User, user_id) if user_id else None
        await sign_in.record_failure(session, account=account, source=_source(req), user=user, now=req.now)


@routes.post("/v1/auth/login", summary="Sign in with email and password", roles=PUBLIC, tags=TAGS,
             body=Login, response=TokenOut, errors=(429,), own_transactions=True)
async def login(req: ApiRequest[Login, Any]) -> TokenOut:
    """Staff in production mode (or with `staff_second_factor`) must also give an authenticator
    code; until they have set one up, their session can do nothing but set it up."""
    email = normalise_email(req.body.email)
    account = sign_in.account_key(email)
    await _throttled(req, account)
    async with req.ctx.read_sessions() as session:
        user = await session.scalar(select(User).where(User.email == email))
    ok = await asyncio.to_thread(verify_password_or_dummy, user.password_hash if user else None, req.body.password)
    if user is None or not ok or not user.active:
        await _failed(req, account, user.id if user else None)
        raise unauthorized("email or password is wrong")
    body = req.body
    async with req.ctx.sessions() as session, session.begin():
        user = await session.get(User, user.id, with_for_update=True)
        assert user is not None
        if user.totp_secret is not None:
            if body.second_factor_code is None and body.recovery_code is None:
                second = "missing"
            elif body.second_factor_code is not None:
                second = "ok" if sign_in.verify_second_factor_code(user, body.second_factor_code, req.now) else "wrong"
            else:
                assert body.recovery_code is not None
                used = await sign_in.use_recovery_code(session, user, body.recovery_code, req.now)
                second = "ok" if used else "wrong"
            if second != "ok":
                issued = None
            else:
                issued = await _open(req, session, user)
        else:
            second = "none"
            issued = await _open(req, session, user)
        if issued is not None:
            await sign_in.clear_account(session, account)
    if second == "missing":
        raise ProblemError(401, "second-factor-required",
                           "enter the 6-digit code from your authenticator app (or a recovery code)",
                           headers={"WWW-Authenticate": "Bearer"})
    if second == "wrong":
        await _failed(req, account, user.id)
        raise ProblemError(401, "second-factor-wrong", "the authenticator or recovery code is wrong or already used",
                           headers={"WWW-Authenticate": "Bearer"})
    assert issued is not None
    return TokenOut.of(issued)


async def _open(req: ApiRequest[Any, Any], session: Any, user: User) -> sign_in.Issued:
    role = Role(user.role)
    enrolling = (role in SECOND_FACTOR_ROLES and user.totp_secret is None
                 and req.ctx.settings.second_factor_required_for_staff)
    principal = Principal(id=user.id, role=role, facility_id=user.facility_id, enrolling=enrolling)
    return await sign_in.open_session(session, req.ctx, principal, now=req.now, source=_source(req),
                                      user_agent=req.request.headers.get("User-Agent"))


@routes.post("/v1/auth/kiosk", summary="Sign in as a kiosk device", roles=PUBLIC, tags=TAGS,
             body=KioskLogin, response=TokenOut, errors=(429,), own_transactions=True)
async def kiosk_login(req: ApiRequest[KioskLogin, Any]) -> TokenOut:
    account = sign_in.account_key(f"kiosk:{req.body.kiosk_id}")
    await _throttled(req, account)
    async with req.ctx.read_sessions() as session:
        kiosk = await session.get(Kiosk, req.body.kiosk_id)
    ok = await asyncio.to_thread(verify_password_or_dummy, kiosk.secret_hash if kiosk else None, req.body.secret)
    if kiosk is None or not ok or not kiosk.active:
        await _failed(req, account, None)
        raise unauthorized("kiosk id or secret is wrong")
    principal = Principal(id=kiosk.id, role=Role.KIOSK, facility_id=kiosk.facility_id,
                          housing_unit_id=kiosk.housing_unit_id)
    async with req.ctx.sessions() as session, session.begin():
        issued = await sign_in.open_session(session, req.ctx, principal, now=req.now, source=_source(req),
                                            user_agent=req.request.headers.get("User-Agent"))
        await sign_in.clear_account(session, account)
    return TokenOut.of(issued)


@routes.post("/v1/auth/refresh", summary="Renew my access token with the refresh token", roles=PUBLIC, tags=TAGS,
             body=Refresh, response=TokenOut)
async def refresh(req: ApiRequest[Refresh, Any]) -> TokenOut:
    issued = await sign_in.refresh_session(req.session, req.ctx, req.body.refresh_token, now=req.now)
    if issued is None:
        raise unauthorized("this sign-in has ended (signed out, password changed or expired): sign in again")
    return TokenOut.of(issued)


class SignedOut(BaseModel):
    status: Literal["signed-out"] = "signed-out"


@routes.post("/v1/auth/logout", summary="Sign out (ends this session everywhere it is used)", roles=SIGNED_IN,
             tags=TAGS, response=SignedOut, during_enrolment=True)
async def logout(req: ApiRequest[Any, Any]) -> SignedOut:
    if req.principal.session_id is not None:
        await sign_in.revoke(req.session, req.principal.session_id, reason="signed-out", now=req.now)
    return SignedOut()


class SessionOut(BaseModel):
    id: str
    created_at: datetime
    refreshed_at: datetime
    expires_at: datetime
    source_address: str | None
    user_agent: str | None
    current: bool


@routes.get("/v1/me/sessions", summary="List where I am signed in", roles=USER_ROLES, tags=TAGS,
            response=list[SessionOut], during_enrolment=True)
async def my_sessions(req: ApiRequest[Any, Any]) -> list[SessionOut]:
    rows = (await req.session.scalars(select(AuthSession).where(
        AuthSession.user_id == req.principal.id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > req.now)
        .order_by(AuthSession.created_at.desc()))).all()
    return [SessionOut(id=r.id, created_at=r.created_at, refreshed_at=r.refreshed_at, expires_at=r.expires_at,
                       source_address=r.source_address, user_agent=r.user_agent,
                       current=r.id == req.principal.session_id) for r in rows]


@routes.delete("/v1/me/sessions/{session_id}", summary="Sign out one of my sessions", roles=USER_ROLES, tags=TAGS,
               response=SignedOut, during_enrolment=True)
async def end_session(req: ApiRequest[Any, Any]) -> SignedOut:
    row = await req.session.get(AuthSession, req.path("session_id"))
    if row is None or row.user_id != req.principal.id:
        raise not_found("session")
    await sign_in.revoke(req.session, row.id, reason="signed-out", now=req.now)
    return SignedOut()


# ------------------------------------------------------------------ passwords


class PasswordChange(Strict):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: Password


class PasswordChanged(BaseModel):
    status: Literal["password-changed"] = "password-changed"
    other_sessions_ended: bool = True


@routes.post("/v1/me/password", summary="Change my password", roles=USER_ROLES, tags=TAGS, body=PasswordChange,
             response=PasswordChanged, errors=(429,), own_transactions=True)
async def change_password(req: ApiRequest[PasswordChange, Any]) -> PasswordChanged:
    """Needs the current password (throttled like sign-in); ends every other session; the
    account holder is told by mail."""
    async with req.ctx.read_sessions() as session:
        user = await session.get(User, req.principal.id)
    if user is None or not user.active:
        raise unauthorized("this account no longer exists or is disabled")
    account = sign_in.account_key(user.email)
    await _throttled(req, account)
    if not await asyncio.to_thread(verify_password_or_dummy, user.password_hash, req.body.current_password):
        await _failed(req, account, user.id)
        raise forbidden("the current password is wrong")
    if req.body.new_password == req.body.current_password:
        raise bad_request("the new password is the same as the current one", slug="password-unchanged")
    new_hash = await asyncio.to_thread(hash_password, req.body.new_password)
    async with req.ctx.sessions() as session, session.begin():
        row = await session.get(User, user.id, with_for_update=True)
        assert row is not None
        row.password_hash, row.password_changed_at = new_hash, req.now
        await sign_in.revoke_all(session, user_id=row.id, reason="password-changed", now=req.now,
                                 keep=req.principal.session_id)
        account_mail.password_changed(session, to=row.email, name=row.legal_name, how="from a signed-in device",
                                      now=req.now)
    return PasswordChanged()


class ResetRequest(Strict):
    email: EmailStr


class ResetQueued(BaseModel):
    status: Literal["check-your-email"] = "check-your-email"
    detail: str = "If an account uses this address, a reset link is on its way; it works once, for 30 minutes."


@routes.post("/v1/auth/password-reset", summary="Mail me a password reset link", roles=PUBLIC, tags=TAGS,
             body=ResetRequest, response=ResetQueued, status=202)
async def request_reset(req: ApiRequest[ResetRequest, Any]) -> ResetQueued:
    """The same answer whether or not the address has an account; at most one mail a minute."""
    user = await req.session.scalar(select(User).where(User.email == normalise_email(req.body.email)))
    if user is None or not user.active:
        return ResetQueued()
    last = await sign_in.last_token_at(req.session, user, "reset-password")
    if last is not None and req.now - last < timedelta(seconds=60):
        return ResetQueued()
    token = await sign_in.issue_account_token(req.session, user, "reset-password", sign_in.RESET_PASSWORD_TTL,
                                              req.now)
    account_mail.password_reset(req.session, req.ctx.settings, to=user.email, name=user.legal_name, token=token,
                                ttl=sign_in.RESET_PASSWORD_TTL, now=req.now)
    return ResetQueued()


class ResetComplete(Strict):
    token: Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=200)]
    new_password: Password


@routes.post("/v1/auth/password-reset/complete", summary="Choose a new password with the mailed link's token",
             roles=PUBLIC, tags=TAGS, body=ResetComplete, response=PasswordChanged)
async def complete_reset(req: ApiRequest[ResetComplete, Any]) -> PasswordChanged:
    """Single use; ends every session; proves the mailbox, so it also confirms the email. A reset
    does not remove a second factor (that would make the mailbox enough to take a staff account)."""
    user = await sign_in.redeem_account_token(req.session, "reset-password", req.body.token, req.now)
    if user is None:
        raise bad_request("this reset link is not valid: it was used, replaced by a newer one, or expired "
                          "(ask for a new one)", slug="invalid-or-expired-token")
    user.password_hash = await asyncio.to_thread(hash_password, req.body.new_password)
    user.password_changed_at = req.now
    if user.email_confirmed_at is None:
        user.email_confirmed_at = req.now
    await sign_in.revoke_all(req.session, user_id=user.id, reason="password-reset", now=req.now)
    await sign_in.clear_account(req.session, sign_in.account_key(user.email))
    account_mail.password_changed(req.session, to=user.email, name=user.legal_name, how="with a mailed reset link",
                                  now=req.now)
    return PasswordChanged()


# ------------------------------------------------------------------ the second factor


class SecondFactorSetup(BaseModel):
    secret: str = Field(description="base32: type it into the authenticator app if the link cannot be opened")
    otpauth_uri: str = Field(description="an otpauth:// link (or QR code content) for authenticator apps")


@routes.post("/v1/me/second-factor/setup", summary="Start setting up an authenticator app", roles=USER_ROLES,
             tags=TAGS, response=SecondFactorSetup, errors=(409,), during_enrolment=True)
async def setup_second_factor(req: ApiRequest[Any, Any]) -> SecondFactorSetup:
    user = await current_user(req)
    if user.totp_secret is not None:
        raise ProblemError(409, "second-factor-already-on",
                           "two-step sign-in is already on; turn it off first to move it to another app")
    user.totp_pending_secret = sign_in.new_totp_secret()
    return SecondFactorSetup(secret=user.totp_pending_secret,
                             otpauth_uri=sign_in.provisioning_uri(user.totp_pending_secret, user.email))


class CodeIn(Strict):
    code: Code


class SecondFactorOn(BaseModel):
    recovery_codes: list[str] = Field(description="shown once: each signs in once if the phone is lost")
    access_token: str | None = Field(default=None, description="a new token for this session, now fully enabled")
    expires_at: datetime | None = None


@routes.post("/v1/me/second-factor/confirm", summary="Finish setting up the authenticator app with a code",
             roles=USER_ROLES, tags=TAGS, body=CodeIn, response=SecondFactorOn, errors=(409,), during_enrolment=True)
async def confirm_second_factor(req: ApiRequest[CodeIn, Any]) -> SecondFactorOn:
    user = await current_user(req)
    if user.totp_pending_secret is None:
        raise ProblemError(409, "no-setup-started", "start with POST /v1/me/second-factor/setup")
    step = sign_in.check_totp(user.totp_pending_secret, req.body.code, req.now, None)
    if step is None:
        raise bad_request("the code does not match: check the phone's time and type the current code",
                          slug="second-factor-wrong")
    user.totp_secret, user.totp_pending_secret, user.totp_last_step = user.totp_pending_secret, None, step
    codes = await sign_in.issue_recovery_codes(req.session, user)
    account_mail.second_factor_changed(req.session, to=user.email, name=user.legal_name, enabled=True, now=req.now)
    out = SecondFactorOn(recovery_codes=codes)
    p = req.principal
    if p.session_id is not None:
        row = await req.session.get(AuthSession, p.session_id)
        if row is not None:
            row.second_factor_pending = False
            token, expires = req.ctx.access_tokens.issue(
                Principal(id=p.id, role=p.role, facility_id=p.facility_id, session_id=p.session_id),
                req.now, not_after=row.expires_at)
            out.access_token, out.expires_at = token, expires
    return out


class SecondFactorOff(Strict):
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    code: Code


class SecondFactorState(BaseModel):
    second_factor: bool
    recovery_codes_left: int


@routes.delete("/v1/me/second-factor", summary="Turn off the authenticator app", roles=USER_ROLES, tags=TAGS,
               body=SecondFactorOff, response=SecondFactorState)
async def turn_off_second_factor(req: ApiRequest[SecondFactorOff, Any]) -> SecondFactorState:
    user = await current_user(req)
    if Role(user.role) in SECOND_FACTOR_ROLES and req.ctx.settings.second_factor_required_for_staff:
        raise forbidden("staff must keep two-step sign-in; set up a new app with a recovery code instead")
    if user.totp_secret is None:
        return SecondFactorState(second_factor=False, recovery_codes_left=0)
    password_ok = await asyncio.to_thread(verify_password_or_dummy, user.password_hash, req.body.password)
    if not password_ok or not sign_in.verify_second_factor_code(user, req.body.code, req.now):
        raise forbidden("the password or the code is wrong")
    user.totp_secret = None
    await sign_in.drop_recovery_codes(req.session, user)
    account_mail.second_factor_changed(req.session, to=user.email, name=user.legal_name, enabled=False, now=req.now)
    return SecondFactorState(second_factor=False, recovery_codes_left=0)


@routes.get("/v1/me/second-factor", summary="Read my two-step sign-in state", roles=USER_ROLES, tags=TAGS,
            response=SecondFactorState, during_enrolment=True)
async def second_factor_state(req: ApiRequest[Any, Any]) -> SecondFactorState:
    user = await current_user(req)
    return SecondFactorState(second_factor=user.totp_secret is not None,
                             recovery_codes_left=await sign_in.recovery_codes_left(req.session, user))


@routes.post("/v1/me/second-factor/recovery-codes", summary="Replace my recovery codes", roles=USER_ROLES,
             tags=TAGS, body=CodeIn, response=SecondFactorOn)
async def new_recovery_codes(req: ApiRequest[CodeIn, Any]) -> SecondFactorOn:
    user = await current_user(req)
    if user.totp_secret is None or not sign_in.verify_second_factor_code(user, req.body.code, req.now):
        raise forbidden("the authenticator code is wrong (or two-step sign-in is off)")
    return SecondFactorOn(recovery_codes=await sign_in.issue_recovery_codes(req.session, user))
