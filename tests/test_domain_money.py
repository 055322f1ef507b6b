"""Pure money and outcome rules: quotes (B6, M7), per-minute charges (M8), cancellations (M3, M4),
final statuses (S6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from control_api.domain.cancellation import cancellation_credit_rule, rejection_credit_rule
from control_api.domain.outcomes import Attendance, credit_rule_for, final_status
from control_api.domain.pricing import FeeSpec, build_quote, per_minute_charge
from control_api.domain.rates import per_minute_cap_cents

T = datetime(2027, 5, 1, 15, tzinfo=UTC)


def test_b6_m7_quote_itemises_fees_and_rounds_tax_to_the_cent() -> None:
    q = build_quote(billing_mode="per_visit", visit_type="social", length_minutes=20, price_cents=499,
                    per_minute_cents=0, fees=[FeeSpec("Tax", "tax", rate_basis_points=625), FeeSpec("Zero", "fee")])
    assert [(x.kind, x.amount_cents) for x in q.lines] == [("price", 499), ("tax", 31)]  # 31.19 -> 31; zero omitted
    assert (q.price_cents, q.fees_cents, q.total_cents) == (499, 31, 530)


def test_m8_per_minute_prepays_the_full_length_and_charges_started_minutes() -> None:
    q = build_quote(billing_mode="per_minute", visit_type="social", length_minutes=30, price_cents=999,
                    per_minute_cents=21, fees=[])
    assert q.price_cents == 630 and q.per_minute_cents == 21
    assert per_minute_charge(per_minute_cents=21, length_minutes=30, connected_seconds=0) == 0
    assert per_minute_charge(per_minute_cents=21, length_minutes=30, connected_seconds=61) == 42
    assert per_minute_charge(per_minute_cents=21, length_minutes=30, connected_seconds=99999) == 630


@pytest.mark.parametrize(("tier", "cap"), [("prison", 25), ("jail_1000_plus", 19), ("jail_350_999", 19),
                                           ("jail_100_349", 21), ("jail_50_99", 25), ("jail_under_50", 44)])
def test_m8_caps_per_size_tier(tier: str, cap: int) -> None:
    assert per_minute_cap_cents(tier) == cap


def test_m3_m4_cancellation_credit_rules() -> None:
    notice = 24
    assert cancellation_credit_rule(cancelled_by="visitor", now=T - timedelta(hours=24), starts_at=T,
                                    notice_hours=notice) == "M3a"  # exactly the notice is enough
    assert cancellation_credit_rule(cancelled_by="visitor", now=T - timedelta(hours=23, minutes=59), starts_at=T,
                                    notice_hours=notice) is None
    assert cancellation_credit_rule(cancelled_by="facility", now=T - timedelta(minutes=1), starts_at=T,
                                    notice_hours=notice) == "M3b"
    assert cancellation_credit_rule(cancelled_by="operator", now=T - timedelta(minutes=1), starts_at=T,
                                    notice_hours=notice) == "M3d"
    assert cancellation_credit_rule(cancelled_by="visitor", now=T, starts_at=T, notice_hours=0) is None
    assert cancellation_credit_rule(cancelled_by="facility", now=T, starts_at=T, notice_hours=0) is None
    assert cancellation_credit_rule(cancelled_by="operator", now=T, starts_at=T, notice_hours=0) is None
    assert rejection_credit_rule(now=T - timedelta(seconds=1), starts_at=T) == "M3c"
    assert rejection_credit_rule(now=T, starts_at=T) is None


def test_s6_final_status_from_attendance_and_report() -> None:
    both, visitor_only, resident_only, nobody = (Attendance(True, True), Attendance(True, False),
                                                 Attendance(False, True), Attendance(False, False))
    assert final_status(both, "completed") == "completed"
    assert final_status(both, None) == "completed"
    assert final_status(visitor_only, None) == "no_show_resident"
    assert final_status(resident_only, None) == "no_show_visitor"
    assert final_status(nobody, None) == "no_show_visitor"
    assert final_status(both, "disconnected") == "disconnected"
    assert final_status(nobody, "failed") == "failed"
    assert credit_rule_for("failed", None) == "M6"
    assert credit_rule_for("disconnected", "conduct") is None and credit_rule_for("disconnected", "facility") is None
