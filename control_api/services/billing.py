"""Money movements (rules M1-M9), each a balanced double entry inside the caller's transaction.

Accounts (positive = debit):
- ``asset:gateway``                      what the card processor owes us (card charges)
- ``liability:credit:<visitor>``         the visitor's credit balance (M2)
- ``revenue:visits:<facility>``          visit prices earned
- ``revenue:fees`` / ``liability:tax``   fees and taxes (never creditable, M7)
- ``revenue:expired-credit``             credit that expired unspent (M5)

Every transaction carries the rule that produced it and, where it belongs to one, the visit, so
the visitor's statement (M9) is a plain read of the ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import (
    CreditDraw,
    CreditLot,
    Facility,
    FeeItem,
    LedgerEntry,
    LedgerTransaction,
    Payment,
    SessionOption,
    Visit,
)
from control_api.domain import credits as credit_rules
from control_api.domain.errors import Conflict, PaymentRequired, RuleViolation
from control_api.domain.pricing import BillingMode, FeeSpec, Quote, build_quote, per_minute_charge, unused_tax_cents
from control_api.payments.gateway import PaymentDeclinedError
from control_api.services.sweeps import sweep

GATEWAY = "asset:gateway"
FEES = "revenue:fees"
TAX = "liability:tax"
EXPIRED = "revenue:expired-credit"


def credit_account(visitor_id: str) -> str:
    return f"liability:credit:{visitor_id}"


def revenue_account(facility_id: str) -> str:
    return f"revenue:visits:{facility_id}"


class LedgerImbalanceError(Exception):
    pass


async def post(session: AsyncSession, *, kind: str, rule: str, description: str, now: datetime,
               entries: list[tuple[str, int]], visitor_id: str | None = None, visit_id: str | None = None,
               idempotency_key: str | None = None) -> LedgerTransaction:
    """Write one balanced transaction. Zero-amount lines are dropped."""
    lines = [(account, amount) for account, amount in entries if amount != 0]
    if sum(amount for _, amount in lines) != 0:
        raise LedgerImbalanceError(f"{kind}: entries do not balance: {lines}")
    tx = LedgerTransaction(kind=kind, rule=rule, description=description, visitor_id=visitor_id,
                           visit_id=visit_id, idempotency_key=idempotency_key, created_at=now)
    session.add(tx)
    await session.flush()
    session.add_all(LedgerEntry(transaction_id=tx.id, account=a, amount_cents=v) for a, v in lines)
    await session.flush()
    return tx


async def _tx_exists(session: AsyncSession, idempotency_key: str) -> bool:
    found = await session.scalar(select(LedgerTransaction.id).where(
        LedgerTransaction.idempotency_key == idempotency_key))
    return found is not None


# ------------------------------------------------------------------ quotes (B6)


async def quote_for(session: AsyncSession, facility: Facility, visit_type: str, length_minutes: int) -> Quote:
    """The itemised quote for a length the facility offers (A3), or a 422 naming what is offered."""
    options = (await session.scalars(select(SessionOption).where(
        SessionOption.facility_id == facility.id, SessionOption.visit_type == visit_type))).all()
    option = next((o for o in options if o.length_minutes == length_minutes), None)
    if option is None:
        offered = ", ".join(str(o.length_minutes) for o in sorted(options, key=lambda o: o.length_minutes))
        raise RuleViolation(
            f"{facility.name} does not offer {length_minutes}-minute {visit_type} visits (rule A3); "
            f"offered: {offered or 'none'}", slug="length-not-offered")
    fees = (await session.scalars(select(FeeItem).where(FeeItem.facility_id == facility.id)
                                  .order_by(FeeItem.kind, FeeItem.name))).all()
    mode: BillingMode = "per_minute" if facility.billing_mode == "per_minute" else "per_visit"
    return build_quote(billing_mode=mode, visit_type=visit_type, length_minutes=length_minutes,
                       price_cents=option.price_cents, per_minute_cents=option.per_minute_cents,
                       fees=[FeeSpec(f.name, "tax" if f.kind == "tax" else "fee", f.amount_cents,
                                     f.rate_basis_points) for f in fees])


# ------------------------------------------------------------------ credit lots (M5)


async def _lots(session: AsyncSession, visitor_id: str, *, lock: bool) -> list[CreditLot]:
    stmt = select(CreditLot).where(CreditLot.visitor_id == visitor_id, CreditLot.remaining_cents > 0)
    if lock:
        stmt = stmt.with_for_update()
    return list((await session.scalars(stmt)).all())


def _as_domain(lots: list[CreditLot]) -> list[credit_rules.Lot]:
    return [credit_rules.Lot(id=x.id, remaining_cents=x.remaining_cents, expires_at=x.expires_at,
                             issued_at=x.issued_at) for x in lots]


async def balance_cents(session: AsyncSession, visitor_id: str, now: datetime) -> int:
    """Spendable credit: unexpired lots only, even before the expiry sweep has run."""
    return credit_rules.available_cents(_as_domain(await _lots(session, visitor_id, lock=False)), now)


async def issue_credit(session: AsyncSession, ctx: AppContext, *, visitor_id: str, facility_id: str,
                       amount_cents: int, rule: str, description: str, now: datetime,
                       visit_id: str | None, idempotency_key: str) -> int:
    """Put money on the visitor's balance as lots that expire (M2, M5; see `_returned_lots`).
    Idempotent per key. Returns the cents credited (0 when already done)."""
    if amount_cents <= 0 or await _tx_exists(session, idempotency_key):
        return 0
    await post(session, kind="credit_issued", rule=rule, description=description, now=now,
               visitor_id=visitor_id, visit_id=visit_id, idempotency_key=idempotency_key,
               entries=[(revenue_account(facility_id), amount_cents), (credit_account(visitor_id), -amount_cents)])
    await _returned_lots(session, ctx, visitor_id=visitor_id, visit_id=visit_id, amount_cents=amount_cents,
                         rule=rule, now=now)
    return amount_cents


async def _returned_lots(session: AsyncSession, ctx: AppContext, *, visitor_id: str, visit_id: str | None,
                         amount_cents: int, rule: str, now: datetime) -> list[CreditLot]:
    """M5: money given back for a visit becomes lots. The part the visit's credit draws paid keeps
    the expiry of the lots it came from (soonest-expiring first, so the visitor keeps the later
    ones), so cancelling and rebooking never rolls an expiry over; only the rest (paid by card)
    is a new lot with a fresh expiry. Returns the lots, the fresh one (if any) last."""
    draws: list[tuple[CreditDraw, CreditLot]] = []
    if visit_id is not None:
        draws = [(d, lot) for d, lot in (await session.execute(
            select(CreditDraw, CreditLot).join(CreditLot, CreditLot.id == CreditDraw.lot_id)
            .where(CreditDraw.visit_id == visit_id).order_by(CreditLot.expires_at.desc(), CreditLot.id))).all()]
    # Already given back for this visit in earlier returns (a settlement, then a credit): not twice.
    returned_before = int(await session.scalar(select(func.coalesce(func.sum(CreditLot.amount_cents), 0)).where(
        CreditLot.visit_id == visit_id, CreditLot.inherited_expiry.is_(True))) or 0) if visit_id else 0
    left = amount_cents
    lots: list[CreditLot] = []
    budget = sum(d.amount_cents for d, _ in draws) - returned_before
    for draw, source in draws:  # latest-expiring first
        if left <= 0 or budget <= 0:
            break
        cents = min(draw.amount_cents, left, budget)
        lots.append(CreditLot(visitor_id=visitor_id, amount_cents=cents, remaining_cents=cents, issued_at=now,
                              expires_at=source.expires_at, rule=rule, visit_id=visit_id, inherited_expiry=True))
        left -= cents
        budget -= cents
    if left > 0:
        lots.append(CreditLot(visitor_id=visitor_id, amount_cents=left, remaining_cents=left, issued_at=now,
                              expires_at=credit_rules.expiry_for(now, ctx.settings.credit_expiry_days),
                              rule=rule, visit_id=visit_id))
    session.add_all(lots)
    await session.flush()
    return lots


async def credit_visit(session: AsyncSession, ctx: AppContext, *, visit: Visit, rule: str, description: str,
                       now: datetime) -> int:
    """Credit the visit's price back (fees excluded, M2/M7), at most once per visit."""
    charged_already = await _per_minute_refunded(session, visit)
    amount = visit.price_cents - charged_already
    return await issue_credit(session, ctx, visitor_id=visit.booker_id, facility_id=visit.facility_id,
                              amount_cents=amount, rule=rule, description=description, now=now,
                              visit_id=visit.id, idempotency_key=f"credit:{visit.id}")


async def _per_minute_refunded(session: AsyncSession, visit: Visit) -> int:
    """What per-minute settlement already returned for this visit (so a credit never doubles it)."""
    tx = await session.scalar(select(LedgerTransaction).where(
        LedgerTransaction.idempotency_key == f"settle:{visit.id}"))
    if tx is None:
        return 0
    # The price part of what came back (the tax that returned with it is not price, M2).
    returned = await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)).where(
        LedgerEntry.transaction_id == tx.id, LedgerEntry.account == revenue_account(visit.facility_id)))
    return int(returned or 0)


# ------------------------------------------------------------------ paying for a visit (B6, M1, M5)


@dataclass(frozen=True)
class PaymentResult:
    credit_used_cents: int
    card_charged_cents: int
    payment_id: str | None


async def pay_for_visit(session: AsyncSession, ctx: AppContext, *, visit: Visit, card_token: str | None,
                        use_credit: bool, idempotency_key: str, now: datetime,
                        on_rollback: list[Callable[[], Awaitable[None]]]) -> PaymentResult:
    """Prepay a just-created (flushed) visit: credit first if asked (soonest-expiring lot first),
    the rest by card. A decline raises 402 and the caller's transaction rolls back, so a booking
    that cannot be paid is never created (B6). If the transaction later rolls back for any other
    reason the card charge is voided.
    """
    total = visit.total_cents
    draws: list[tuple[str, int]] = []
    lots_by_id: dict[str, CreditLot] = {}
    if use_credit and total > 0:
        lots = await _lots(session, visit.booker_id, lock=True)
        lots_by_id = {lot.id: lot for lot in lots}
        draws = credit_rules.allocate(_as_domain(lots), total, now)
    credit_used = sum(c for _, c in draws)
    card_amount = total - credit_used

    charge = None
    if card_amount > 0:
        if not card_token:
            raise PaymentRequired(f"{card_amount / 100:.2f} USD is due: give a card token (rule B6)",
                                  amount_due_cents=card_amount)
        try:
            # M1: the key makes a retried request reuse its charge. A charge found voided belongs
            # to an attempt that never committed (a database outage between charge and commit):
            # charge again under a key derived from it, so the retry is paid for real, once.
            key = f"{visit.booker_id}:{idempotency_key}"
            for _attempt in range(10):
                charge = await ctx.gateway.charge(token=card_token, amount_cents=card_amount, idempotency_key=key,
                                                  description=f"openvisit visit {visit.id}")
                if not charge.voided:
                    break
                key = f"{visit.booker_id}:{idempotency_key}:after:{charge.charge_id}"
            else:
                raise Conflict("this request's earlier charges were all voided; retry it with a new Idempotency-Key",
                               slug="payment-retry-exhausted")
        except PaymentDeclinedError as exc:
            raise PaymentRequired(f"the card was declined: {exc.message}", slug="payment-declined",
                                  decline_code=exc.code) from exc
        gateway = ctx.gateway
        charge_id = charge.charge_id

        async def void() -> None:
            await gateway.void(charge_id)

        on_rollback.append(void)

    for lot_id, cents in draws:
        lots_by_id[lot_id].remaining_cents -= cents
        session.add(CreditDraw(visit_id=visit.id, lot_id=lot_id, amount_cents=cents))  # M5: for a later return

    quote: dict[str, Any] = visit.quote
    fee_total = sum(x["amount_cents"] for x in quote.get("lines", []) if x["kind"] == "fee")
    tax_total = sum(x["amount_cents"] for x in quote.get("lines", []) if x["kind"] == "tax")
    parts = []
    if card_amount:
        parts.append(f"card {card_amount / 100:.2f}")
    if credit_used:
        parts.append(f"credit {credit_used / 100:.2f}")
    await post(session, kind="visit_payment", rule="B6", now=now, visitor_id=visit.booker_id, visit_id=visit.id,
               idempotency_key=f"pay:{visit.id}",
               description=f"Payment for {visit.visit_type} visit ({', '.join(parts) or 'free'})",
               entries=[(GATEWAY, card_amount), (credit_account(visit.booker_id), credit_used),
                        (revenue_account(visit.facility_id), -visit.price_cents), (FEES, -fee_total),
                        (TAX, -tax_total)])
    payment_id = None
    if charge is not None:
        payment = Payment(visitor_id=visit.booker_id, visit_id=visit.id, gateway=ctx.gateway.name,
                          gateway_charge_id=charge.charge_id, amount_cents=charge.amount_cents,
                          status="succeeded", card_brand=charge.card_brand, card_last4=charge.card_last4,
                          created_at=now)
        session.add(payment)
        await session.flush()
        payment_id = payment.id
    return PaymentResult(credit_used_cents=credit_used, card_charged_cents=card_amount, payment_id=payment_id)


# ------------------------------------------------------------------ per-minute settlement (M8)


async def settle_per_minute(session: AsyncSession, ctx: AppContext, *, visit: Visit, connected_seconds: int,
                            now: datetime) -> int:
    """Charge only connected minutes; the unused prepaid part returns to the balance at once."""
    if visit.billing_mode != "per_minute":
        return 0
    if await _tx_exists(session, f"settle:{visit.id}") or await _tx_exists(session, f"credit:{visit.id}"):
        return 0
    rate = int(visit.quote.get("per_minute_cents") or 0)
    used = per_minute_charge(per_minute_cents=rate, length_minutes=visit.length_minutes,
                             connected_seconds=connected_seconds)
    unused = max(visit.price_cents - used, 0)
    tax = sum(int(x["amount_cents"]) for x in visit.quote.get("lines", []) if x.get("kind") == "tax")
    tax_back = unused_tax_cents(tax_cents=tax, price_cents=visit.price_cents, used_cents=used)
    back = unused + tax_back
    minutes = used // rate if rate else 0
    await post(session, kind="per_minute_settlement", rule="M8", now=now, visitor_id=visit.booker_id,
               visit_id=visit.id, idempotency_key=f"settle:{visit.id}",
               description=f"Per-minute visit: {minutes} of {visit.length_minutes} min used"
               + (f"; the unused minutes' tax ({tax_back / 100:.2f}) returned with them" if tax_back else ""),
               entries=[(revenue_account(visit.facility_id), unused), (TAX, tax_back),
                        (credit_account(visit.booker_id), -back)])
    if back:
        await _returned_lots(session, ctx, visitor_id=visit.booker_id, visit_id=visit.id, amount_cents=back,
                             rule="M8", now=now)
    return back


# ------------------------------------------------------------------ expiry (M5)


@sweep("expire_credits")
async def expire_credits(session: AsyncSession, now: datetime, ctx: AppContext) -> int:
    """Expired credit is never spent: move what is left on expired lots off the balance."""
    lots = (await session.scalars(select(CreditLot).where(
        CreditLot.remaining_cents > 0, CreditLot.expires_at <= now).with_for_update())).all()
    for lot in lots:
        await post(session, kind="credit_expired", rule="M5", now=now, visitor_id=lot.visitor_id,
                   visit_id=lot.visit_id, idempotency_key=f"expire:{lot.id}",
                   description=f"Credit of {lot.amount_cents / 100:.2f} issued {lot.issued_at:%Y-%m-%d} expired",
                   entries=[(credit_account(lot.visitor_id), lot.remaining_cents), (EXPIRED, -lot.remaining_cents)])
        lot.remaining_cents = 0
        lot.expired = True
    return len(lots)


# ------------------------------------------------------------------ statements (M9)


@dataclass(frozen=True)
class StatementLine:
    at: datetime
    kind: str
    rule: str
    description: str
    visit_id: str | None
    amount_cents: int  # effect on what the visitor paid or holds: payments negative, credits positive
    card_cents: int
    credit_cents: int


async def statement(session: AsyncSession, visitor_id: str) -> list[StatementLine]:
    txs = (await session.scalars(select(LedgerTransaction).where(LedgerTransaction.visitor_id == visitor_id)
                                 .order_by(LedgerTransaction.created_at, LedgerTransaction.id))).all()
    if not txs:
        return []
    entries = (await session.execute(select(LedgerEntry.transaction_id, LedgerEntry.account,
                                            LedgerEntry.amount_cents)
                                     .where(LedgerEntry.transaction_id.in_([t.id for t in txs])))).all()
    by_tx: dict[str, dict[str, int]] = {}
    for tx_id, account, amount in entries:
        by_tx.setdefault(tx_id, {})[account] = by_tx.get(tx_id, {}).get(account, 0) + amount
    mine = credit_account(visitor_id)
    lines = []
    for tx in txs:
        acc = by_tx.get(tx.id, {})
        card = acc.get(GATEWAY, 0)
        credit_change = -acc.get(mine, 0)  # + when credit was added, - when spent or expired
        if tx.kind == "visit_payment":
            amount = -(card + -credit_change)
        else:
            amount = credit_change
        lines.append(StatementLine(at=tx.created_at, kind=tx.kind, rule=tx.rule, description=tx.description,
                                   visit_id=tx.visit_id, amount_cents=amount, card_cents=card,
                                   credit_cents=credit_change))
    return lines


async def ledger_is_balanced(session: AsyncSession) -> bool:
    total = await session.scalar(select(func.coalesce(func.sum(LedgerEntry.amount_cents), 0)))
    return int(total or 0) == 0
