"""Idempotency-Key: one answer per key, also for copies that arrive while the first is running.

A money-moving request carries an Idempotency-Key (rule M1). Its answer is stored in
`idempotent_responses` (unique per principal and key) in the same transaction as the money, and
every later copy replays it. A copy that arrives while the first is still running must not run
the handler against the first one's half-done work: it would answer "resident busy" or "not
cancellable" to a request that in fact succeeded. So the request's transaction claims the key
FIRST, by inserting the row (status IN_FLIGHT), before the handler runs, and fills in the answer
at the end (`complete`). A copy's insert of the same key then waits for the first transaction:
PostgreSQL blocks the insert on the uncommitted unique entry; SQLite write transactions are
serialised (BEGIN IMMEDIATE), so the copy only starts once the first has ended.

- The first committed: the copy's insert fails on the unique constraint (IntegrityError) and the
  copy replays the stored answer (`Idempotent-Replayed: true`; 422 if its body differs).
- The first rolled back (a 4xx domain answer, a bug, its process or connection died, the
  database restarted): its row went with everything else it did, nothing was charged, and the
  copy's insert succeeds, so it runs the request anew (and meets the same rules).
- The first is still running after IN_FLIGHT_WAIT_SECONDS (PostgreSQL `lock_timeout`): the copy
  gets 409 idempotency-key-in-use with Retry-After, which is retryable, never a domain answer.

Why not a claim committed in its own transaction, polled by the copies: such a claim outlives an
owner that crashed or lost the database between claiming and releasing, so it needs a staleness
bound read on some clock and a takeover that fences out a slow but live owner. A claim inside the
request's own transaction is released by the database exactly when that transaction ends, on any
number of processes. Its cost: a waiting copy holds a database connection, for a bounded time.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiohttp import web
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import IdempotentResponse
from control_api.db.types import new_id
from control_api.problems import ProblemError, bad_request

IN_FLIGHT = 0  # status_code of a claimed key whose answer is not known yet (seen only by its own transaction)
# How long a copy waits for the first request with its key. Real time, measured by the database
# server (lock_timeout), never the test clock: the wait is about the client's patience, and the
# test clock can jump by hours while no time passes. Tests lower it.
IN_FLIGHT_WAIT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 2
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-:.]{8,200}$")


@dataclass(frozen=True)
class KeyedRequest:
    """A money-moving request's identity: who sent it, its key, and what exactly it asked."""

    principal: str
    key: str
    fingerprint: str


def keyed_request(request: web.Request, principal: str, body: bytes | None) -> KeyedRequest:
    """The request's Idempotency-Key (required and well-formed, else 400) and its fingerprint:
    method, path, query string and body, so a key reused for a different request is told apart."""
    key = request.headers.get("Idempotency-Key")
    if not key:
        raise bad_request("this request moves money: send an Idempotency-Key header",
                          slug="idempotency-key-required")
    if not KEY_PATTERN.match(key):
        raise bad_request("Idempotency-Key must be 8-200 characters of A-Z a-z 0-9 _ - : .",
                          slug="idempotency-key-invalid")
    h = hashlib.sha256()
    h.update(f"{request.method} {request.path}?{request.query_string}".encode())
    h.update(body or b"")
    return KeyedRequest(principal=principal, key=key, fingerprint=h.hexdigest())


def in_use() -> ProblemError:
    return ProblemError(409, "idempotency-key-in-use",
                        "a request with this Idempotency-Key is still being processed; retry it shortly",
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def claim(session: AsyncSession, principal: str, key: str, fingerprint: str, now: datetime) -> str:
    """Claim `key` as the first statement of the request's write transaction; returns the row's id.

    Waits while another transaction holds the same key. Raises IntegrityError when that one
    committed (the caller replays its answer, see `stored_response`), or 409 idempotency-key-in-use
    when it is still running after IN_FLIGHT_WAIT_SECONDS."""
    row_id = new_id()
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        wait_ms = max(1, int(IN_FLIGHT_WAIT_SECONDS * 1000))  # 0 would mean "wait forever"
        await session.execute(text(f"SET LOCAL lock_timeout = '{wait_ms}ms'"))
    try:
        await session.execute(insert(IdempotentResponse).values(
            id=row_id, principal=principal, key=key, request_fingerprint=fingerprint, status_code=IN_FLIGHT,
            body={}, created_at=now))
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
            raise in_use() from None
        raise
    if postgres:  # the handler's own row locks wait as they always did
        await session.execute(text("SET LOCAL lock_timeout TO DEFAULT"))
    return row_id


async def complete(session: AsyncSession, row_id: str, status: int, body: Any) -> None:
    """Store the answer in the claimed row, in the same transaction as the work it answers for."""
    await session.execute(update(IdempotentResponse).where(IdempotentResponse.id == row_id).values(
        status_code=status, body=body))


async def stored_response(ctx: AppContext, principal: str, key: str, fingerprint: str) -> web.Response | None:
    """The committed answer for this key, as a replay; None if there is none."""
    async with ctx.read_sessions() as session:
        stored = await session.scalar(select(IdempotentResponse).where(
            IdempotentResponse.principal == principal, IdempotentResponse.key == key))
    if stored is None:
        return None
    if stored.request_fingerprint != fingerprint:
        raise ProblemError(422, "idempotency-key-reused",
                           "this Idempotency-Key was already used for a different request")
    if stored.status_code == IN_FLIGHT:  # never committed by claim/complete; refuse rather than replay it
        raise in_use()
    return web.json_response(stored.body, status=stored.status_code, headers={"Idempotent-Replayed": "true"},
                             dumps=lambda value: json.dumps(value, default=str))
