"""Money (M): the double-entry ledger, credit lots and draws, card payments and credit requests."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from control_api.db.models.base import Base, fk_column, id_column
from control_api.db.types import UTCDateTime


class LedgerTransaction(Base):
    """M1/M9: one money movement; its entries sum to zero. `rule` says which rule produced it."""

    __tablename__ = "ledger_transactions"

    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(32))  # charge | credit_issued | credit_spent | ...
    rule: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(300))
    visitor_id: Mapped[str | None] = fk_column("users.id", nullable=True)
    visit_id: Mapped[str | None] = fk_column("visits.id", nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)

    entries: Mapped[list[LedgerEntry]] = relationship(back_populates="transaction", lazy="raise")


class LedgerEntry(Base):
    """One side of a double entry. Positive = debit, negative = credit."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    transaction_id: Mapped[str] = fk_column("ledger_transactions.id")
    account: Mapped[str] = mapped_column(String(100), index=True)
    amount_cents: Mapped[int] = mapped_column(BigInteger)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="entries", lazy="raise")


class CreditLot(Base):
    """M5: a credit with its own expiry; spending draws from the lot that expires first."""

    __tablename__ = "credit_lots"
    __table_args__ = (CheckConstraint("remaining_cents >= 0 AND remaining_cents <= amount_cents",
                                      name="remaining"),)

    id: Mapped[str] = id_column()
    visitor_id: Mapped[str] = fk_column("users.id")
    amount_cents: Mapped[int] = mapped_column(Integer)
    remaining_cents: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    rule: Mapped[str] = mapped_column(String(16))
    visit_id: Mapped[str | None] = fk_column("visits.id", nullable=True)
    expired: Mapped[bool] = mapped_column(Boolean, default=False)
    inherited_expiry: Mapped[bool] = mapped_column(Boolean, default=False)  # M5: given back with its source's expiry


class CreditDraw(Base):
    """M5: how much of a visit's price one credit lot paid; credit given back for that visit keeps
    that lot's expiry (cancelling and rebooking never rolls an expiry over)."""

    __tablename__ = "credit_draws"

    id: Mapped[str] = id_column()
    visit_id: Mapped[str] = fk_column("visits.id")
    lot_id: Mapped[str] = fk_column("credit_lots.id")
    amount_cents: Mapped[int] = mapped_column(Integer)


class Payment(Base):
    """A card charge made through the payment gateway (tokens only, never card data: M1)."""

    __tablename__ = "payments"

    id: Mapped[str] = id_column()
    visitor_id: Mapped[str] = fk_column("users.id")
    visit_id: Mapped[str | None] = fk_column("visits.id", nullable=True)
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

    id: Mapped[str] = id_column()
    visitor_id: Mapped[str] = fk_column("users.id")
    visit_id: Mapped[str] = fk_column("visits.id")
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | approved | denied
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decide_by: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    decided_by: Mapped[str | None] = fk_column("users.id", nullable=True, index=False)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
