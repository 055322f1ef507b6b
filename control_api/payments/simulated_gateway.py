"""A simulated payment processor, in process, for demos, development and tests (the product's
default until a real processor is configured): token-only card data, deterministic declines,
idempotent charges. Its tokens mirror common processors' test tokens:

==================================  =====================================
token                               outcome
==================================  =====================================
tok_visa, tok_mastercard, tok_amex  succeeds
tok_chargeDeclined                  declined: card_declined
tok_chargeDeclinedInsufficientFunds declined: insufficient_funds
tok_chargeDeclinedExpiredCard       declined: expired_card
tok_chargeDeclinedProcessingError   declined: processing_error
anything else                       declined: invalid_token
==================================  =====================================
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, replace

from control_api.payments.gateway import Charge, PaymentDeclinedError

CARDS = {"tok_visa": ("visa", "4242"), "tok_mastercard": ("mastercard", "4444"), "tok_amex": ("amex", "8431")}
DECLINES = {
    "tok_chargeDeclined": ("card_declined", "Your card was declined."),
    "tok_chargeDeclinedInsufficientFunds": ("insufficient_funds", "Your card has insufficient funds."),
    "tok_chargeDeclinedExpiredCard": ("expired_card", "Your card has expired."),
    "tok_chargeDeclinedProcessingError": ("processing_error", "An error occurred while processing your card."),
}


@dataclass
class _Record:
    charge: Charge
    token: str
    voided: bool = False


class SimulatedPaymentGateway:
    """Behaves like a processor's test mode. State lives for the life of the process; `name` stays
    "test", the value stored with every charge it made."""

    name = "test"

    def __init__(self) -> None:
        self._by_key: dict[str, _Record] = {}
        self._by_id: dict[str, _Record] = {}
        self._lock = asyncio.Lock()

    async def charge(self, *, token: str, amount_cents: int, idempotency_key: str, description: str) -> Charge:
        if amount_cents <= 0:
            raise PaymentDeclinedError("invalid_amount", "Charges must be for a positive amount.")
        async with self._lock:
            existing = self._by_key.get(idempotency_key)
            if existing is not None:
                if existing.token != token or existing.charge.amount_cents != amount_cents:
                    raise PaymentDeclinedError("idempotency_mismatch",
                                               "Idempotency key reused with different parameters.")
                return replace(existing.charge, voided=existing.voided)
            if token in DECLINES:
                code, message = DECLINES[token]
                raise PaymentDeclinedError(code, message)
            if token not in CARDS:
                raise PaymentDeclinedError("invalid_token", "No such payment token.")
            brand, last4 = CARDS[token]
            charge = Charge(charge_id="ch_test_" + secrets.token_hex(12), amount_cents=amount_cents,
                            card_brand=brand, card_last4=last4)
            record = _Record(charge=charge, token=token)
            self._by_key[idempotency_key] = record
            self._by_id[charge.charge_id] = record
            return charge

    async def void(self, charge_id: str) -> None:
        async with self._lock:
            record = self._by_id.get(charge_id)
            if record is not None:
                record.voided = True

    # Test-mode inspection, like a processor dashboard.
    def settled_charges(self) -> list[Charge]:
        return [r.charge for r in self._by_id.values() if not r.voided]

    def voided_charges(self) -> list[Charge]:
        return [r.charge for r in self._by_id.values() if r.voided]
