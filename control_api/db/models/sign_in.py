"""Sign-in state (issue 12): sessions, one-time account tokens, recovery codes, the login
throttle, and the outgoing mail those flows write."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class AuthSession(Base):
    """One sign-in. Access tokens name it (`sid`); signing out or a password change revokes it,
    and every request checks it, so a revoked session's tokens stop working at once."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = id_column()
    user_id: Mapped[str | None] = fk_column("users.id", nullable=True)
    kiosk_id: Mapped[str | None] = fk_column("kiosks.id", nullable=True)
    refresh_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the refresh token
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    second_factor_pending: Mapped[bool] = mapped_column(Boolean, default=False)  # staff who must enrol first


class AccountToken(Base):
    """A single-use, expiring secret sent by mail: email confirmation or password reset.
    Only its sha256 is stored, so a database reader cannot use it."""

    __tablename__ = "account_tokens"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = fk_column("users.id")
    purpose: Mapped[str] = mapped_column(String(24))  # confirm-email | reset-password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RecoveryCode(Base):
    """A one-time code that stands in for the second factor when the phone is lost (argon2-hashed)."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = id_column()
    user_id: Mapped[str] = fk_column("users.id")
    code_hash: Mapped[str] = mapped_column(String(200))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LoginThrottle(Base):
    """Failed sign-ins counted per account name and per source address (see domain/login_throttle.py)."""

    __tablename__ = "login_throttles"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)  # account:<email> | source:<address>
    failures: Mapped[int] = mapped_column(Integer, default=0)
    first_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failure_at: Mapped[datetime] = mapped_column(UTCDateTime)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class MailMessage(Base):
    """An email on its way out. Written in the transaction that decides to send it (so a mail
    is sent if and only if that change committed); delivered by control_api/mail.py."""

    __tablename__ = "mail_messages"

    id: Mapped[str] = id_column()
    to_address: Mapped[str] = mapped_column(String(254), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
