"""Credits (rules M2-M5): which lots a payment draws from and what has expired.

Credits are lots, each with its own expiry. Spending takes from the lot that expires first
(M5), never from an expired lot. Pure functions: the billing service applies the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Lot:
    id: str
    remaining_cents: int
    expires_at: datetime
    issued_at: datetime


def expiry_for(issued_at: datetime, expiry_days: int) -> datetime:
    return issued_at + timedelta(days=expiry_days)


def spendable(lots: Sequence[Lot], now: datetime) -> list[Lot]:
    """Unexpired lots with money left, soonest-expiring first (ties: oldest issue first)."""
    live = [lot for lot in lots if lot.remaining_cents > 0 and lot.expires_at > now]
    return sorted(live, key=lambda lot: (lot.expires_at, lot.issued_at, lot.id))


def available_cents(lots: Sequence[Lot], now: datetime) -> int:
    return sum(lot.remaining_cents for lot in spendable(lots, now))


def allocate(lots: Sequence[Lot], amount_cents: int, now: datetime) -> list[tuple[str, int]]:
    """Draw up to `amount_cents` from the lots, soonest-expiring first. Returns (lot id, cents)."""
    if amount_cents < 0:
        raise ValueError("amount must not be negative")
    draws: list[tuple[str, int]] = []
    left = amount_cents
    for lot in spendable(lots, now):
        if left == 0:
            break
        take = min(left, lot.remaining_cents)
        draws.append((lot.id, take))
        left -= take
    return draws


def expired(lots: Sequence[Lot], now: datetime) -> list[Lot]:
    """Lots that have passed their expiry with money still on them."""
    return [lot for lot in lots if lot.remaining_cents > 0 and lot.expires_at <= now]
