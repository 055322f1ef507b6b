"""RFC 9457 problem details: every error the API returns is application/problem+json."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control_api.db.outage import (
    BUSY_RETRY_AFTER_SECONDS,
    DB_OUTAGE,
    OUTAGE_RETRY_AFTER_SECONDS,
    OutageTracker,
    Unavailability,
    database_unavailability,
    describe,
)
from control_api.domain.errors import Conflict, DomainError, Forbidden, NotFound, PaymentRequired, RuleViolation

PROBLEM_TYPE_BASE = "https://openvisit.org/problems/"
log = logging.getLogger(__name__)
# An exception no handler turned into a problem (a bug: the client got a 500) is logged here, and
# only that, with its traceback: operators can alert on this logger, and the test suite fails a
# test during which anything was logged on it (tests/conftest.py).
UNHANDLED_LOGGER = "control_api.unhandled"
unhandled_log = logging.getLogger(UNHANDLED_LOGGER)


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a precise 4xx problem and roll back."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.title = title or slug.replace("-", " ").capitalize()
        self.extra = extra or {}
        self.headers = headers or {}

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


def bad_request(detail: str, slug: str = "bad-request", **extra: Any) -> ProblemError:
    return ProblemError(400, slug, detail, extra=extra)


def unauthorized(detail: str = "a valid access token is required") -> ProblemError:
    return ProblemError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, "forbidden", detail)


def not_found(what: str) -> ProblemError:
    return ProblemError(404, "not-found", f"{what} not found")


def conflict(detail: str, slug: str = "conflict", **extra: Any) -> ProblemError:
    return ProblemError(409, slug, detail, extra=extra)


def unprocessable(detail: str, slug: str = "rule-violated", **extra: Any) -> ProblemError:
    return ProblemError(422, slug, detail, extra=extra)


# The one place a domain refusal becomes an HTTP status (control_api.domain.errors).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    RuleViolation: 422,
    PaymentRequired: 402,
    DomainError: 400,  # a refusal of no particular kind (kinds above are matched first)
}


def problem_for(error: DomainError) -> ProblemError:
    """The problem+json answer for a domain refusal: its kind's status, its slug, detail and extras."""
    status = next(code for kind, code in DOMAIN_STATUS.items() if isinstance(error, kind))
    return ProblemError(status, error.slug, error.detail, extra=dict(error.extra))


def problem_response(problem: ProblemError, instance: str | None = None) -> web.Response:
    return web.Response(
        status=problem.status,
        text=json.dumps(problem.to_dict(instance), default=str),
        content_type="application/problem+json",
        headers=problem.headers,
    )


_HTTP_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn every failure into problem+json: a database that does not answer is a 503 with
    Retry-After (logged once per outage), any other unexpected exception a logged 500."""
    try:
        return await handler(request)
    except ProblemError as problem:
        return problem_response(problem, request.path)
    except DomainError as error:
        return problem_response(problem_for(error), request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        slug = _HTTP_SLUGS.get(exc.status, "http-error")
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            detail = f"no such resource: {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow"}}
        return problem_response(ProblemError(exc.status, slug, detail, headers=headers), request.path)
    except Exception as exc:
        why = database_unavailability(exc)
        if why is not None:
            return problem_response(database_unavailable(request, exc, why), request.path)
        unhandled_log.error("unhandled error on %s %s: %s: %s", request.method, request.path, type(exc).__name__,
                            exc, exc_info=exc)
        return problem_response(
            ProblemError(500, "internal-error", "an internal error occurred; nothing was changed"),
            request.path,
        )


def database_unavailable(request: web.Request, exc: BaseException, why: Unavailability) -> ProblemError:
    """The 503 for a database that is down or (SQLite) locked. Each request is one transaction
    that was rolled back, so nothing was written and retrying the same request is safe."""
    where = f"{request.method} {request.path}"
    if why is Unavailability.BUSY:
        log.warning("database busy (locked) on %s; answered 503", where)
        seconds, detail = BUSY_RETRY_AFTER_SECONDS, "the database is busy; nothing was changed, retry shortly"
    else:
        tracker: OutageTracker | None = request.config_dict.get(DB_OUTAGE)
        if tracker is not None:
            tracker.failed(exc, where)
        else:  # an app built without create_app: no outage bookkeeping, still no traceback
            log.warning("database unavailable on %s: %s", where, describe(exc))
        seconds = OUTAGE_RETRY_AFTER_SECONDS
        detail = ("the database is not answering; retry in a few seconds (a request that moves money: with the "
                  "same Idempotency-Key, which never charges twice)")
    return ProblemError(503, "database-unavailable", detail, title="Database unavailable",
                        headers={"Retry-After": str(seconds)})
