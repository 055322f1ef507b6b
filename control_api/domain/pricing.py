"""Quotes (rule B6): the price with every fee and tax itemised, before payment.

The creditable part of a visit is its price; fees and taxes are not creditable (M2, M7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

BillingMode = Literal["per_visit", "per_minute"]


@dataclass(frozen=True)
class FeeSpec:
    name: str
    kind: Literal["fee", "tax"]
    amount_cents: int = 0  # flat
    rate_basis_points: int = 0  # share of the price (taxes)


@dataclass(frozen=True)
class QuoteLine:
    kind: Literal["price", "fee", "tax"]
    name: str
    amount_cents: int


@dataclass(frozen=True)
class Quote:
    billing_mode: BillingMode
    visit_type: str
    length_minutes: int
    per_minute_cents: int | None
    lines: tuple[QuoteLine, ...]

    @property
    def price_cents(self) -> int:
        return sum(line.amount_cents for line in self.lines if line.kind == "price")

    @property
    def fees_cents(self) -> int:
        """Fees and taxes together: the non-creditable part (M7)."""
        return sum(line.amount_cents for line in self.lines if line.kind != "price")

    @property
    def total_cents(self) -> int:
        return self.price_cents + self.fees_cents

    def as_dict(self) -> dict[str, Any]:
        return {
            "billing_mode": self.billing_mode,
            "visit_type": self.visit_type,
            "length_minutes": self.length_minutes,
            "per_minute_cents": self.per_minute_cents,
            "lines": [{"kind": x.kind, "name": x.name, "amount_cents": x.amount_cents} for x in self.lines],
            "price_cents": self.price_cents,
            "fees_cents": self.fees_cents,
            "total_cents": self.total_cents,
            "currency": "USD",
        }


def _share(amount: int, basis_points: int) -> int:
    """Round half up to the cent, in integers."""
    return (amount * basis_points + 5000) // 10000


def build_quote(*, billing_mode: BillingMode, visit_type: str, length_minutes: int, price_cents: int,
                per_minute_cents: int, fees: Sequence[FeeSpec]) -> Quote:
    """Per-visit: the option's fixed price. Per-minute: the full length is prepaid (M8)."""
    if length_minutes <= 0:
        raise ValueError("length must be positive")
    if billing_mode == "per_minute":
        price = per_minute_cents * length_minutes
        label = f"{visit_type.title()} visit, {length_minutes} min at ${per_minute_cents / 100:.2f}/min"
        rate: int | None = per_minute_cents
    else:
        price = price_cents
        label = f"{visit_type.title()} visit, {length_minutes} min"
        rate = None
    lines = [QuoteLine("price", label, price)]
    for fee in fees:
        amount = fee.amount_cents + _share(price, fee.rate_basis_points)
        if amount:
            lines.append(QuoteLine(fee.kind, fee.name, amount))
    return Quote(billing_mode=billing_mode, visit_type=visit_type, length_minutes=length_minutes,
                 per_minute_cents=rate, lines=tuple(lines))


def per_minute_charge(*, per_minute_cents: int, length_minutes: int, connected_seconds: int) -> int:
    """M8: only connected minutes are charged; a started minute counts, never more than prepaid."""
    minutes = min(length_minutes, -(-max(connected_seconds, 0) // 60))
    return per_minute_cents * minutes


def unused_tax_cents(*, tax_cents: int, price_cents: int, used_cents: int) -> int:
    """M8: the tax on the minutes not used returns with them. The tax kept is the used part's
    share of the prepaid tax (rounded half up to the cent), so kept + returned == prepaid."""
    if price_cents <= 0 or tax_cents <= 0:
        return 0
    used = min(max(used_cents, 0), price_cents)
    kept = (2 * tax_cents * used + price_cents) // (2 * price_cents)
    return tax_cents - kept
