"""A small declarative layer over aiohttp routes.

Each endpoint declares who may call it, its pydantic body/query models and its response model.
From that one declaration we get: authentication, validation with precise 4xx problems, one
database transaction per request (rolled back on any error, so no partial writes), replay of
idempotent money-moving requests, and the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_api import idempotency
from control_api.auth import Principal, Role
from control_api.authentication import caller_of
from control_api.context import CONTEXT, AppContext
from control_api.problems import ProblemError, unauthorized
from control_api.request_input import MAX_JSON_BYTES, MAX_JSON_DEPTH, parse_query, read_body, refuse_nul
from control_api.services import visit_access

B = TypeVar("B", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)

PUBLIC: frozenset[Role] = frozenset()
__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "PUBLIC", "ApiRequest", "ApiRoutes", "Endpoint", "Handler"]


class ApiRequest(Generic[B, Q]):
    """What a handler receives: the caller, validated input and the request's DB session."""

    def __init__(self, request: web.Request, ctx: AppContext, session: AsyncSession,
                 principal: Principal | None, body: B | None, query: Q | None, raw: bytes | None) -> None:
        self.request = request
        self.ctx = ctx
        self.session = session
        self._principal = principal
        self._body = body
        self._query = query
        self.raw = raw
        self.on_rollback: list[Callable[[], Awaitable[None]]] = []
        self.after_commit: list[Callable[[], Awaitable[None]]] = []

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            raise unauthorized()
        return self._principal

    @property
    def body(self) -> B:
        assert self._body is not None, "endpoint declared no body model"
        return self._body

    @property
    def query(self) -> Q:
        assert self._query is not None, "endpoint declared no query model"
        return self._query

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def now(self) -> Any:
        return self.ctx.clock.now()

    def require_facility(self, facility_id: str) -> None:
        """V3: staff and kiosks act only within their own facility; operators everywhere."""
        visit_access.require_facility(self.principal, facility_id)


Handler = Callable[[ApiRequest[Any, Any]], Awaitable[Any]]


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: frozenset[Role]
    tags: tuple[str, ...]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    idempotent: bool = False
    raw_body: tuple[str, ...] = ()  # accepted content types for a non-JSON body (uploads, CSV)
    raw_max_bytes: int = 10 * 1024 * 1024
    response_content_type: str | None = None  # for non-JSON responses (files, CSV)
    description: str | None = None
    errors: tuple[int, ...] = field(default=())
    own_transactions: bool = False  # the handler opens its own write transactions (e.g. sweeps)
    during_enrolment: bool = False  # callable by staff who have yet to set up their second factor

    @property
    def public(self) -> bool:
        return not self.roles

    @property
    def writes(self) -> bool:
        return self.method != "GET"


class ApiRoutes:
    """Collects endpoint declarations; `install` adds them to an aiohttp application."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(self, method: str, path: str, *, summary: str, roles: Iterable[Role], tags: Iterable[str] = (),
              **options: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(Endpoint(method=method, path=path, handler=handler, summary=summary,
                                           roles=frozenset(roles), tags=tuple(tags), **options))
            return handler

        return register

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kw)

    def include(self, other: ApiRoutes) -> None:
        self.endpoints.extend(other.endpoints)

    def install(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _aiohttp_handler(endpoint))


def _serialise(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_serialise(v) for v in value]
    return value


def _aiohttp_handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The request pipeline, in named steps: input hygiene, the caller (authentication.py), query
    and body (request_input.py), a replayed answer for a repeated money-moving request
    (idempotency.py), then the handler in one transaction (`_run_in_transaction`)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        refuse_nul(request)
        principal = await caller_of(request, ctx, endpoint)
        query = parse_query(request, endpoint.query)
        body, raw = await read_body(request, endpoint)
        keyed: idempotency.KeyedRequest | None = None
        if endpoint.idempotent:
            assert principal is not None  # idempotent endpoints are never public
            keyed = idempotency.keyed_request(request, principal.key,
                                              body.model_dump_json().encode() if body is not None else raw)
            # Fast path: a key whose answer is committed replays without a write transaction.
            replay = await idempotency.stored_response(ctx, keyed.principal, keyed.key, keyed.fingerprint)
            if replay is not None:
                return replay
        api_request: ApiRequest[Any, Any] = ApiRequest(request, ctx, session=None,  # type: ignore[arg-type]
                                                       principal=principal, body=body, query=query, raw=raw)
        try:
            response = await _run_in_transaction(endpoint, api_request, keyed)
        except IntegrityError:
            await _run(api_request.on_rollback)
            if keyed is not None:
                # A copy with this key committed first (our claim failed): answer what it answered.
                replay = await idempotency.stored_response(ctx, keyed.principal, keyed.key, keyed.fingerprint)
                if replay is not None:
                    return replay
            raise concurrent_change() from None
        except BaseException:
            await _run(api_request.on_rollback)
            raise
        await _run(api_request.after_commit)
        return response

    handle.__name__ = endpoint.handler.__name__
    return handle


def concurrent_change() -> ProblemError:
    """A unique constraint met at commit: another request changed the same thing first."""
    return ProblemError(409, "conflict", "the request conflicted with a concurrent change; retry it")


async def _run_in_transaction(endpoint: Endpoint, api_request: ApiRequest[Any, Any],
                              keyed: idempotency.KeyedRequest | None) -> web.StreamResponse:
    """One database transaction per request, rolled back on any error (no partial writes); a
    money-moving request claims its key first and stores its answer in the same transaction."""
    ctx = api_request.ctx
    maker = ctx.sessions if endpoint.writes and not endpoint.own_transactions else ctx.read_sessions
    async with maker() as session:
        api_request.session = session
        async with session.begin():
            claim: str | None = None
            if keyed is not None:
                # Before the handler: copies of this request wait here for this one (see idempotency.py).
                claim = await idempotency.claim(session, keyed.principal, keyed.key, keyed.fingerprint,
                                                ctx.clock.now())
            response, payload = _response(endpoint, await endpoint.handler(api_request), keyed is not None)
            if claim is not None:
                await idempotency.complete(session, claim, response.status, payload or {})
    return response


def _response(endpoint: Endpoint, result: Any, keep_payload: bool) -> tuple[web.StreamResponse, Any]:
    """The handler's result as a response, and (for an idempotent request) the JSON it answered."""
    if isinstance(result, web.StreamResponse):
        return result, None
    if isinstance(result, BaseModel):  # pydantic's own encoder is the fast path
        text = result.model_dump_json()
        response = web.Response(text=text, status=endpoint.status, content_type="application/json")
        return response, json.loads(text) if keep_payload else None
    payload = _serialise(result)
    return web.json_response(payload, status=endpoint.status, dumps=_dumps), payload


async def _run(callbacks: list[Callable[[], Awaitable[None]]]) -> None:
    for cb in callbacks:
        await cb()


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
