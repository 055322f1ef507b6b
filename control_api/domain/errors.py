"""Refusals the domain and the services decide, without knowing HTTP.

A service says *what* went wrong (not found, not allowed, a conflict with the current state, a
rule broken, payment needed) with a stable slug, a sentence for the person and optional extra
fields; the HTTP layer (`control_api.problems`) maps each kind to its status and answers with
application/problem+json, in one place.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every domain refusal: `slug` names it for clients, `detail` explains it, `extra`
    carries machine-readable fields (the rule, the deadline, the amount due...)."""

    default_slug = "error"

    def __init__(self, detail: str, *, slug: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.slug = slug or self.default_slug
        self.extra = extra


class NotFound(DomainError):
    """The thing does not exist, or the caller may not learn that it does."""

    default_slug = "not-found"

    @classmethod
    def of(cls, what: str) -> NotFound:
        return cls(f"{what} not found")


class Forbidden(DomainError):
    """The caller is known but this is not theirs to see or do (V1-V3, P1)."""

    default_slug = "forbidden"


class Conflict(DomainError):
    """The request is valid but the current state refuses it (already cancelled, slot taken, too late)."""

    default_slug = "conflict"


class RuleViolation(DomainError):
    """The request breaks a business rule whatever the state (a length not offered, card data)."""

    default_slug = "rule-violated"


class PaymentRequired(DomainError):
    """Money is due and was not paid: no card token, or the card was declined (B6, M1)."""

    default_slug = "payment-required"
