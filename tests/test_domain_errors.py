"""Domain refusals (control_api.domain.errors) become problem+json in one place
(control_api.problems.problem_for): each kind keeps its status, slug, detail and extras."""

from __future__ import annotations

import json

from control_api.domain.errors import Conflict, DomainError, Forbidden, NotFound, PaymentRequired, RuleViolation
from control_api.problems import PROBLEM_TYPE_BASE, problem_for, problem_response


def test_each_kind_maps_to_its_status_and_default_slug() -> None:
    cases = [(NotFound.of("visit"), 404, "not-found", "visit not found"),
             (Forbidden("not yours"), 403, "forbidden", "not yours"),
             (Conflict("already cancelled"), 409, "conflict", "already cancelled"),
             (RuleViolation("not offered"), 422, "rule-violated", "not offered"),
             (PaymentRequired("1.00 USD is due"), 402, "payment-required", "1.00 USD is due"),
             (DomainError("unclassified"), 400, "error", "unclassified")]
    for error, status, slug, detail in cases:
        problem = problem_for(error)
        assert (problem.status, problem.slug, problem.detail) == (status, slug, detail)


def test_slug_and_extras_reach_the_answer_in_order() -> None:
    """B3 violations and M1 declines carry machine-readable fields after the standard ones."""
    error = Conflict("the slot is taken", slug="slot-taken", rule="B3", violations=[{"rule": "B3"}])
    response = problem_response(problem_for(error), "/v1/visits")
    assert response.status == 409
    assert response.content_type == "application/problem+json"
    assert response.text is not None
    body = json.loads(response.text)
    assert list(body) == ["type", "title", "status", "detail", "instance", "rule", "violations"]
    assert body["type"] == PROBLEM_TYPE_BASE + "slot-taken"
    assert body["title"] == "Slot taken"
    assert body["rule"] == "B3" and body["violations"] == [{"rule": "B3"}]


def test_extras_are_copied_not_shared() -> None:
    error = PaymentRequired("declined", slug="payment-declined", decline_code="card_declined")
    problem = problem_for(error)
    problem.extra["decline_code"] = "changed"
    assert error.extra == {"decline_code": "card_declined"}
