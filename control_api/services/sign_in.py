"""Sign-in mechanics: revocable sessions, the failed-sign-in throttle, mailed single-use
tokens, the TOTP second factor and its recovery codes (issue 12).

Everything here runs inside a caller's transaction and takes the time from the caller (the
test clock may have moved it). The policy numbers live in `control_api.domain.login_throttle`.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.auth import Principal, Role, hash_password, verify_password
from control_api.context import AppContext
from control_api.db.models import AccountToken, AuthSession, Kiosk, LoginThrottle, RecoveryCode, User
from control_api.domain.login_throttle import (
    ACCOUNT_POLICY,
    SOURCE_POLICY,
    ThrottlePolicy,
    ThrottleState,
    after_failure,
    newly_blocked,
    retry_after,
)
from control_api.services import account_mail

log = logging.getLogger(__name__)

CONFIRM_EMAIL_TTL = timedelta(hours=48)
RESET_PASSWORD_TTL = timedelta(minutes=30)
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "openvisit"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ------------------------------------------------------------------ the throttle


def account_key(email: str) -> str:
    return f"account:{email}"


def source_key(address: str | None) -> str:
    return f"source:{address or 'unknown'}"


def _state(row: LoginThrottle | None) -> ThrottleState | None:
    if row is None:
        return None
    return ThrottleState(failures=row.failures, first_failure_at=row.first_failure_at,
                         last_failure_at=row.last_failure_at, blocked_until=row.blocked_until)


async def throttle_wait(session: AsyncSession, keys: list[str], now: datetime) -> timedelta | None:
    """The longest block running on any of `keys` (None: the password may be checked)."""
    rows = (await session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))).all()
    waits = [w for w in (retry_after(_state(r), now) for r in rows) if w is not None]
    return max(waits) if waits else None


async def _count(session: AsyncSession, key: str, policy: ThrottlePolicy, now: datetime
                 ) -> tuple[LoginThrottle, bool]:
    row = await session.get(LoginThrottle, key, with_for_update=True)
    before = _state(row)
    after = after_failure(policy, before, now)
    if row is None:
        row = LoginThrottle(key=key, failures=after.failures, first_failure_at=after.first_failure_at,
                            last_failure_at=after.last_failure_at, blocked_until=after.blocked_until)
        session.add(row)
    else:
        row.failures, row.first_failure_at = after.failures, after.first_failure_at
        row.last_failure_at, row.blocked_until = after.last_failure_at, after.blocked_until
    return row, newly_blocked(before, after, now)


async def record_failure(session: AsyncSession, *, account: str, source: str | None, user: User | None,
                         now: datetime) -> None:
    """Count a failed sign-in against the account name and the source; tell the holder of a real
    account when a block starts (at most once per throttle window)."""
    row, blocked = await _count(session, account, ACCOUNT_POLICY, now)
    await _count(session, source_key(source), SOURCE_POLICY, now)
    log.warning("failed sign-in for %s from %s (%d in a row)", account, source, row.failures)
    if blocked and user is not None and row.blocked_until is not None and (
            row.notified_at is None or now - row.notified_at > ACCOUNT_POLICY.window):
        row.notified_at = now
        account_mail.sign_in_blocked(session, to=user.email, name=user.legal_name, failures=row.failures,
                                     until=row.blocked_until, now=now)


async def clear_account(session: AsyncSession, account: str) -> None:
    row = await session.get(LoginThrottle, account)
    if row is not None:
        await session.delete(row)


# ------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class Issued:
    principal: Principal
    access_token: str
    expires_at: datetime
    refresh_token: str
    session_expires_at: datetime


async def open_session(session: AsyncSession, ctx: AppContext, principal: Principal, *, now: datetime,
                       source: str | None, user_agent: str | None) -> Issued:
    refresh = secrets.token_urlsafe(32)
    row = AuthSession(user_id=None if principal.role is Role.KIOSK else principal.id,
                      kiosk_id=principal.id if principal.role is Role.KIOSK else None,
                      refresh_hash=digest(refresh), created_at=now, refreshed_at=now,
                      expires_at=now + timedelta(days=ctx.settings.session_days),
                      source_address=(source or "")[:64] or None, user_agent=(user_agent or "")[:200] or None,
                      second_factor_pending=principal.enrolling)
    session.add(row)
    await session.flush()
    bound = Principal(id=principal.id, role=principal.role, facility_id=principal.facility_id,
                      housing_unit_id=principal.housing_unit_id, session_id=row.id, enrolling=principal.enrolling)
    token, expires = ctx.access_tokens.issue(bound, now, not_after=row.expires_at)
    return Issued(bound, token, expires, refresh, row.expires_at)


async def refresh_session(session: AsyncSession, ctx: AppContext, refresh_token: str, *, now: datetime
                          ) -> Issued | None:
    """Rotate the refresh token and issue a new access token; None if the session is over.

    A refresh token used twice means it was copied: the whole session is revoked."""
    row = await session.scalar(select(AuthSession).where(AuthSession.refresh_hash == digest(refresh_token))
                               .with_for_update())
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    principal = await _principal_of(session, row)
    if principal is None:
        row.revoked_at, row.revoked_reason = now, "account-disabled"
        return None
    refresh = secrets.token_urlsafe(32)
    row.refresh_hash = digest(refresh)
    row.refreshed_at = now
    row.expires_at = now + timedelta(days=ctx.settings.session_days)
    token, expires = ctx.access_tokens.issue(principal, now, not_after=row.expires_at)
    return Issued(principal, token, expires, refresh, row.expires_at)


async def _principal_of(session: AsyncSession, row: AuthSession) -> Principal | None:
    if row.kiosk_id is not None:
        kiosk = await session.get(Kiosk, row.kiosk_id)
        if kiosk is None or not kiosk.active:
            return None
        return Principal(id=kiosk.id, role=Role.KIOSK, facility_id=kiosk.facility_id,
                         housing_unit_id=kiosk.housing_unit_id, session_id=row.id)
    user = await session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    return Principal(id=user.id, role=Role(user.role), facility_id=user.facility_id, session_id=row.id,
                     enrolling=row.second_factor_pending)


async def session_is_live(session: AsyncSession, session_id: str, now: datetime) -> bool:
    row = await session.get(AuthSession, session_id)
    return row is not None and row.revoked_at is None and row.expires_at > now


async def revoke(session: AsyncSession, session_id: str, *, reason: str, now: datetime) -> None:
    await session.execute(update(AuthSession).where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
                          .values(revoked_at=now, revoked_reason=reason))


async def revoke_all(session: AsyncSession, *, user_id: str, reason: str, now: datetime,
                     keep: str | None = None) -> None:
    """End every sign-in of a user (a password change keeps the session that made it)."""
    stmt = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(AuthSession.id != keep)
    await session.execute(stmt.values(revoked_at=now, revoked_reason=reason))


# ------------------------------------------------------------------ mailed tokens


async def issue_account_token(session: AsyncSession, user: User, purpose: str, ttl: timedelta,
                              now: datetime) -> str:
    """A fresh single-use token; earlier unused ones for the same purpose stop working."""
    await session.execute(update(AccountToken).where(
        AccountToken.user_id == user.id, AccountToken.purpose == purpose, AccountToken.used_at.is_(None))
        .values(used_at=now))
    token = secrets.token_urlsafe(24)
    session.add(AccountToken(user_id=user.id, purpose=purpose, token_hash=digest(token), created_at=now,
                             expires_at=now + ttl))
    return token


async def redeem_account_token(session: AsyncSession, purpose: str, token: str, now: datetime) -> User | None:
    row = await session.scalar(select(AccountToken).where(AccountToken.token_hash == digest(token))
                               .with_for_update())
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= now:
        return None
    row.used_at = now
    user = await session.get(User, row.user_id)
    return user if user is not None and user.active else None


async def last_token_at(session: AsyncSession, user: User, purpose: str) -> datetime | None:
    return await session.scalar(select(AccountToken.created_at).where(
        AccountToken.user_id == user.id, AccountToken.purpose == purpose)
        .order_by(AccountToken.created_at.desc()).limit(1))


# ------------------------------------------------------------------ the second factor (RFC 6238)


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def check_totp(secret: str, code: str, now: datetime, last_step: int | None) -> int | None:
    """The time step a code belongs to (one step of clock drift either way), or None. A step at
    or before `last_step` was already used: refused, so a code seen over a shoulder is spent."""
    code = code.strip().replace(" ", "")
    if not code.isdigit() or len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    step = int(now.timestamp()) // totp.interval
    for candidate in (step, step - 1, step + 1):
        if last_step is not None and candidate <= last_step:
            continue
        if secrets.compare_digest(totp.at(candidate * totp.interval), code):
            return candidate
    return None


def verify_second_factor_code(user: User, code: str, now: datetime) -> bool:
    if user.totp_secret is None:
        return False
    step = check_totp(user.totp_secret, code, now, user.totp_last_step)
    if step is None:
        return False
    user.totp_last_step = step
    return True


def _normal_recovery(code: str) -> str:
    return code.strip().replace("-", "").replace(" ", "").lower()


async def drop_recovery_codes(session: AsyncSession, user: User) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


async def issue_recovery_codes(session: AsyncSession, user: User) -> list[str]:
    """Ten new one-time codes (the old ones stop working); shown to the user once."""
    await drop_recovery_codes(session, user)
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(5)  # 40 bits each, argon2-hashed, single use and throttled
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(RecoveryCode(user_id=user.id, code_hash=hash_password(raw)))
    return codes


async def use_recovery_code(session: AsyncSession, user: User, code: str, now: datetime) -> bool:
    normal = _normal_recovery(code)
    if len(normal) != 10:
        return False
    rows = (await session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                                             RecoveryCode.used_at.is_(None)))).all()
    for row in rows:
        if verify_password(row.code_hash, normal):
            row.used_at = now
            return True
    return False


async def recovery_codes_left(session: AsyncSession, user: User) -> int:
    rows = (await session.scalars(select(RecoveryCode.id).where(RecoveryCode.user_id == user.id,
                                                                RecoveryCode.used_at.is_(None)))).all()
    return len(rows)
