"""The payment gateway interface the billing service charges through."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Charge:
    charge_id: str
    amount_cents: int
    card_brand: str
    card_last4: str
    voided: bool = False  # a processor answers a reused idempotency key with the charge as it is now


class PaymentDeclinedError(Exception):
    """The processor refused the charge; `code` is the processor's decline code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PaymentGateway(Protocol):
    name: str

    async def charge(self, *, token: str, amount_cents: int, idempotency_key: str, description: str) -> Charge:
        """Charge a tokenised card. The same idempotency key returns the same charge, in its current
        state (`voided` once `void` cancelled it)."""
        ...

    async def void(self, charge_id: str) -> None:
        """Cancel a charge whose booking did not commit (the money never settles)."""
        ...
