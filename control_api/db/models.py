"""The relational model. Rule numbers refer to ../shared/domain-rules.md.

Times are UTC instants (`UTCDateTime`); wall-clock schedule data (visitation windows) is stored
as minutes after local midnight and evaluated in the facility's time zone (A1). Money is
integer cents; balances are never stored, they are sums of ledger entries (M1).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from control_api.db.types import UTCDateTime, new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _id() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


def _fk(target: str, *, nullable: bool = False, index: bool = True) -> Mapped[Any]:
    return mapped_column(String(36), ForeignKey(target, ondelete="RESTRICT"), nullable=nullable, index=index)


# ---------------------------------------------------------------- facilities (A)


class Facility(Base):
    __tablename__ = "facilities"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))  # A1, an IANA zone
    booking_horizon_days: Mapped[int] = mapped_column(Integer, default=14)  # A5
    min_lead_minutes: Mapped[int] = mapped_column(Integer, default=60)  # A5
    cancellation_notice_hours: Mapped[int] = mapped_column(Integer, default=24)  # A6
    weekly_visit_limit: Mapped[int] = mapped_column(Integer, default=7)  # A7
    review_mode: Mapped[str] = mapped_column(String(16), default="auto")  # A7: auto | manual
    retention_days: Mapped[int] = mapped_column(Integer, default=365)  # A8
    billing_mode: Mapped[str] = mapped_column(String(16), default="per_visit")  # M8
    size_tier: Mapped[str] = mapped_column(String(32), default="prison")  # M8
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    housing_units: Mapped[list[HousingUnit]] = relationship(back_populates="facility", lazy="raise")


class HousingUnit(Base):
    __tablename__ = "housing_units"
    __table_args__ = (UniqueConstraint("facility_id", "name"),)

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    name: Mapped[str] = mapped_column(String(100))
    kiosk_count: Mapped[int] = mapped_column(Integer, default=1)  # A4
    facility: Mapped[Facility] = relationship(back_populates="housing_units", lazy="raise")


class VisitationWindow(Base):
    """A2: a weekly window in local wall-clock time, e.g. Monday 08:00-11:00."""

    __tablename__ = "visitation_windows"
    __table_args__ = (
        CheckConstraint("weekday >= 0 AND weekday <= 6", name="weekday"),
        CheckConstraint("start_minute >= 0 AND start_minute < end_minute AND end_minute <= 1440", name="span"),
    )

    id: Mapped[str] = _id()
    housing_unit_id: Mapped[str] = _fk("housing_units.id")
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday (Python's convention)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)


class Closure(Base):
    """A2: a dated closure removing visitation (whole facility, or one housing unit)."""

    __tablename__ = "closures"

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    housing_unit_id: Mapped[str | None] = _fk("housing_units.id", nullable=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200))


class SessionOption(Base):
    """A3: a length offered per visit type and its price (per visit, or per minute under M8)."""

    __tablename__ = "session_options"
    __table_args__ = (UniqueConstraint("facility_id", "visit_type", "length_minutes"),)

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    visit_type: Mapped[str] = mapped_column(String(16))  # social | privileged
    length_minutes: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer, default=0)  # per_visit mode
    per_minute_cents: Mapped[int] = mapped_column(Integer, default=0)  # per_minute mode


class FeeItem(Base):
    """M7: an itemised, non-creditable fee or tax shown in every quote (default: none)."""

    __tablename__ = "fee_items"

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))  # fee | tax
    amount_cents: Mapped[int] = mapped_column(Integer, default=0)  # flat amount
    rate_basis_points: Mapped[int] = mapped_column(Integer, default=0)  # tax: share of price


# ---------------------------------------------------------------- people


class User(Base):
    """Anyone who signs in: visitors, attorneys, facility staff and operators."""

    __tablename__ = "users"

    id: Mapped[str] = _id()
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), index=True)
    facility_id: Mapped[str | None] = _fk("facilities.id", nullable=True)  # staff only (V3)
    legal_name: Mapped[str] = mapped_column(String(200))
    postal_address: Mapped[str | None] = mapped_column(Text, nullable=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date, nullable=True)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    photo_id_file: Mapped[str | None] = mapped_column(String(100), nullable=True)  # name in uploads dir
    photo_id_content_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    bar_number: Mapped[str | None] = mapped_column(String(32), nullable=True)  # attorneys (V2)
    bar_state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Accounts (issue 12): a confirmed mailbox, and an optional RFC 6238 second factor.
    email_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # set once confirmed
    totp_pending_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # during enrolment
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # no code is accepted twice
    language: Mapped[str | None] = mapped_column(String(8), nullable=True)  # the pages' language (en, es)


# ---------------------------------------------------------------- sign-in (issue 12)


class AuthSession(Base):
    """One sign-in. Access tokens name it (`sid`); signing out or a password change revokes it,
    and every request checks it, so a revoked session's tokens stop working at once."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = _id()
    user_id: Mapped[str | None] = _fk("users.id", nullable=True)
    kiosk_id: Mapped[str | None] = _fk("kiosks.id", nullable=True)
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

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
    purpose: Mapped[str] = mapped_column(String(24))  # confirm-email | reset-password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RecoveryCode(Base):
    """A one-time code that stands in for the second factor when the phone is lost (argon2-hashed)."""

    __tablename__ = "recovery_codes"

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
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

    id: Mapped[str] = _id()
    to_address: Mapped[str] = mapped_column(String(254), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(200))
    body_text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Kiosk(Base):
    """A facility device bound to one housing unit; signs in with its own secret."""

    __tablename__ = "kiosks"

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    housing_unit_id: Mapped[str] = _fk("housing_units.id")
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Resident(Base):
    __tablename__ = "residents"
    __table_args__ = (UniqueConstraint("facility_id", "booking_number"),)

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    housing_unit_id: Mapped[str] = _fk("housing_units.id")
    booking_number: Mapped[str] = mapped_column(String(32))
    full_name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AccessRequest(Base):
    """V1: a visitor asks a facility for access; staff approve or deny with a reason."""

    __tablename__ = "access_requests"

    id: Mapped[str] = _id()
    visitor_id: Mapped[str] = _fk("users.id")
    facility_id: Mapped[str] = _fk("facilities.id")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | approved | denied
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = _fk("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BarVerification(Base):
    """V2: a facility's verification of an attorney's Bar number."""

    __tablename__ = "bar_verifications"

    id: Mapped[str] = _id()
    attorney_id: Mapped[str] = _fk("users.id")
    facility_id: Mapped[str] = _fk("facilities.id")
    bar_number: Mapped[str] = mapped_column(String(32))
    bar_state: Mapped[str] = mapped_column(String(2))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | verified | rejected
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    decided_by: Mapped[str | None] = _fk("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- visits (B, S)


class Visit(Base):
    """B1: one resident, one facility, one booker, a start, a length and a type that never changes."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_unit_time", "housing_unit_id", "starts_at"),
        Index("ix_visits_resident_time", "resident_id", "starts_at"),
    )

    id: Mapped[str] = _id()
    facility_id: Mapped[str] = _fk("facilities.id")
    housing_unit_id: Mapped[str] = _fk("housing_units.id", index=False)
    resident_id: Mapped[str] = _fk("residents.id", index=False)
    booker_id: Mapped[str] = _fk("users.id")
    visit_type: Mapped[str] = mapped_column(String(16))  # social | privileged
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    length_minutes: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    billing_mode: Mapped[str] = mapped_column(String(16))
    price_cents: Mapped[int] = mapped_column(Integer)  # creditable part (M2)
    fees_cents: Mapped[int] = mapped_column(Integer)  # non-creditable (M7)
    total_cents: Mapped[int] = mapped_column(Integer)
    quote: Mapped[dict[str, Any]] = mapped_column(JSON)  # the itemised quote the visitor accepted (B6)
    disconnect_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # S4
    ended_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # visitor|facility|operator
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    review_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    resident_checked_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    visitor_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    resident_joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    media_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    connected_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # S5/S6: when the control plane learned that the media session was lost (a node died or went
    # silent); the visit stays joinable until its end and is `failed` if it never resumes.
    interrupted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # R1: what went wrong with this visit's recording (write error, refused for lack of space, a
    # segment recovered after a crash); non-empty means the recording is incomplete, shown to staff.
    recording_problems: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


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
    visit_id: Mapped[str] = _fk("visits.id")
    node_id: Mapped[str] = mapped_column(String(100), index=True)
    state: Mapped[str] = mapped_column(String(16))  # live | ended | lost
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    connected_seconds: Mapped[int] = mapped_column(Integer, default=0)


class VisitEvent(Base):
    """What the media plane reported about a visit; `event_id` makes reports idempotent."""

    __tablename__ = "visit_events"

    id: Mapped[str] = _id()
    event_id: Mapped[str] = mapped_column(String(100), unique=True)
    visit_id: Mapped[str] = _fk("visits.id")
    kind: Mapped[str] = mapped_column(String(32))
    participant: Mapped[str | None] = mapped_column(String(16), nullable=True)  # visitor | resident
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)


class KioskNotification(Base):
    """B7: what the resident sees on the kiosk about booked, moved or cancelled visits."""

    __tablename__ = "kiosk_notifications"

    id: Mapped[str] = _id()
    housing_unit_id: Mapped[str] = _fk("housing_units.id")
    resident_id: Mapped[str] = _fk("residents.id")
    visit_id: Mapped[str] = _fk("visits.id")
    kind: Mapped[str] = mapped_column(String(16))  # booked | moved | cancelled
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# ---------------------------------------------------------------- money (M)


class LedgerTransaction(Base):
    """M1/M9: one money movement; its entries sum to zero. `rule` says which rule produced it."""

    __tablename__ = "ledger_transactions"

    id: Mapped[str] = _id()
    kind: Mapped[str] = mapped_column(String(32))  # charge | credit_issued | credit_spent | ...
    rule: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(300))
    visitor_id: Mapped[str | None] = _fk("users.id", nullable=True)
    visit_id: Mapped[str | None] = _fk("visits.id", nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    entries: Mapped[list[LedgerEntry]] = relationship(back_populates="transaction", lazy="raise")


class LedgerEntry(Base):
    """One side of a double entry. Positive = debit, negative = credit."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    transaction_id: Mapped[str] = _fk("ledger_transactions.id")
    account: Mapped[str] = mapped_column(String(100), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries", lazy="raise")


class CreditLot(Base):
    """M5: a credit with its own expiry; spending draws from the lot that expires first."""

    __tablename__ = "credit_lots"
    __table_args__ = (CheckConstraint("remaining_cents >= 0 AND remaining_cents <= amount_cents",
                                      name="remaining"),)

    id: Mapped[str] = _id()
    visitor_id: Mapped[str] = _fk("users.id")
    amount_cents: Mapped[int] = mapped_column(Integer)
    remaining_cents: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    rule: Mapped[str] = mapped_column(String(16))
    visit_id: Mapped[str | None] = _fk("visits.id", nullable=True)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    inherited_expiry: Mapped[bool] = mapped_column(Boolean, default=False)  # M5: given back with its source's expiry


class CreditDraw(Base):
    """M5: how much of a visit's price one credit lot paid; credit given back for that visit keeps
    that lot's expiry (cancelling and rebooking never rolls an expiry over)."""

    __tablename__ = "credit_draws"

    id: Mapped[str] = _id()
    visit_id: Mapped[str] = _fk("visits.id")
    lot_id: Mapped[str] = _fk("credit_lots.id")
    amount_cents: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    """A card charge made through the payment gateway (tokens only, never card data: M1)."""

    __tablename__ = "payments"

    id: Mapped[str] = _id()
    visitor_id: Mapped[str] = _fk("users.id")
    visit_id: Mapped[str | None] = _fk("visits.id", nullable=True)
    gateway: Mapped[str] = mapped_column(String(32))
    gateway_charge_id: Mapped[str] = mapped_column(String(100), unique=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # succeeded | voided
    card_brand: Mapped[str | None] = mapped_column(String(16), nullable=True)
    card_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CreditRequest(Base):
    """M6: a visitor's claim of a system problem, decided within 72 hours."""

    __tablename__ = "credit_requests"

    id: Mapped[str] = _id()
    visitor_id: Mapped[str] = _fk("users.id")
    visit_id: Mapped[str] = _fk("visits.id")
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | approved | denied
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decide_by: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    decided_by: Mapped[str | None] = _fk("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)


class IdempotentResponse(Base):
    """The stored answer to a money-moving request, replayed when the same key comes again."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[str] = _id()
    principal: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(200))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ClockState(Base):
    """The persisted offset of the test clock (always zero in production)."""

    __tablename__ = "clock_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset_seconds: Mapped[int] = mapped_column(BigInteger, default=0)


# ---------------------------------------------------------------- recordings (R1-R4)


class Recording(Base):
    """A recorded social visit: its signed manifest (R2) and its legal hold (R4). Denormalised
    search keys (resident, booker, unit) let investigators find it without joins (R3)."""

    __tablename__ = "recordings"

    visit_id: Mapped[str] = mapped_column(String(36), ForeignKey("visits.id", ondelete="RESTRICT"), primary_key=True)
    facility_id: Mapped[str] = _fk("facilities.id")
    housing_unit_id: Mapped[str] = _fk("housing_units.id")
    resident_id: Mapped[str] = _fk("residents.id")
    booker_id: Mapped[str] = _fk("users.id")
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

    id: Mapped[str] = _id()
    visit_id: Mapped[str] = _fk("recordings.visit_id")
    name: Mapped[str] = mapped_column(String(100))
    party: Mapped[str] = mapped_column(String(16))  # visitor | resident
    media_type: Mapped[str] = mapped_column(String(40))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class RecordingFlag(Base):
    """An investigator's note at a moment of a recording (R3)."""

    __tablename__ = "recording_flags"

    id: Mapped[str] = _id()
    visit_id: Mapped[str] = _fk("recordings.visit_id")
    at_seconds: Mapped[float] = mapped_column(Float)
    note: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str] = _fk("users.id", index=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- audit (R3, P1, P3, R4)


class AuditEntry(Base):
    """One append-only audit record, hash-chained to the one before (control_api/domain/audit_chain.py).
    No foreign keys: the record outlives the accounts, visits and files it names."""

    __tablename__ = "audit_entries"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    action: Mapped[str] = mapped_column(String(40), index=True)
    actor_id: Mapped[str | None] = mapped_column(String(80), nullable=True)
    actor_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    facility_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    visit_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's newest sequence number and digest: one row, locked by every append."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
