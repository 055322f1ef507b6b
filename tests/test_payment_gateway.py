"""The built-in test gateway behaves like a processor in test mode (M1): tokens only, declines on
specific tokens, idempotent charges."""

from __future__ import annotations

import pytest

from control_api.payments.gateway import PaymentDeclinedError
from control_api.payments.simulated_gateway import SimulatedPaymentGateway


async def test_same_key_same_charge_and_mismatch_is_refused() -> None:
    gw = SimulatedPaymentGateway()
    first = await gw.charge(token="tok_visa", amount_cents=750, idempotency_key="k1", description="x")
    again = await gw.charge(token="tok_visa", amount_cents=750, idempotency_key="k1", description="x")
    assert first == again and len(gw.settled_charges()) == 1
    assert (first.card_brand, first.card_last4) == ("visa", "4242")
    with pytest.raises(PaymentDeclinedError) as exc:
        await gw.charge(token="tok_visa", amount_cents=800, idempotency_key="k1", description="x")
    assert exc.value.code == "idempotency_mismatch"


@pytest.mark.parametrize(("token", "code"), [("tok_chargeDeclined", "card_declined"),
                                             ("tok_chargeDeclinedInsufficientFunds", "insufficient_funds"),
                                             ("tok_chargeDeclinedExpiredCard", "expired_card"),
                                             ("tok_chargeDeclinedProcessingError", "processing_error"),
                                             ("4242424242424242", "invalid_token")])
async def test_declines(token: str, code: str) -> None:
    gw = SimulatedPaymentGateway()
    with pytest.raises(PaymentDeclinedError) as exc:
        await gw.charge(token=token, amount_cents=100, idempotency_key=f"k-{token}", description="x")
    assert exc.value.code == code and gw.settled_charges() == []


async def test_void_takes_a_charge_out_of_settlement() -> None:
    gw = SimulatedPaymentGateway()
    charge = await gw.charge(token="tok_mastercard", amount_cents=100, idempotency_key="k", description="x")
    await gw.void(charge.charge_id)
    assert gw.settled_charges() == [] and gw.voided_charges() == [charge]
