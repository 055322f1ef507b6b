"""A small declarative layer over aiohttp routes.

Each endpoint declares who may call it, its pydantic body/query models and its response model.
From that one declaration we get: authentication, validation with precise 4xx problems, one
database transaction per request (rolled back on any error, so no partial writes), replay of
idempotent money-moving requests, and the OpenAPI document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_api import idempotency
from control_api.auth import Principal, Role, TokenError
from control_api.context import CONTEXT, AppContext
from control_api.problems import ProblemError, bad_request, forbidden, unauthorized
from control_api.services import visit_access
from control_api.services.sign_in import session_is_live

B = TypeVar("B", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)

PUBLIC: frozenset[Role] = frozenset()
MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32  # arrays/objects nested deeper are refused before parsing (the parser recurses)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_\-:.]{8,200}$")


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


def validation_problem(exc: ValidationError, where: str) -> ProblemError:
    errors = [
        {"location": [where, *[str(p) for p in err["loc"]]], "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = errors[0]
    field_name = ".".join(first["location"][1:]) or where
    return ProblemError(422, "validation-error", f"{field_name}: {first['message']}",
                        title="Request validation failed", extra={"errors": errors})


def authenticate_media_node(request: web.Request, ctx: AppContext) -> Principal:
    """Media nodes present the shared media secret, not a user's access token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if (scheme.lower() != "bearer" or not token.isascii()
            or not hmac.compare_digest(token.strip().encode(), ctx.media_secret.encode())):
        raise unauthorized("media nodes authenticate with 'Bearer <media secret>'")
    return Principal(id="media-node", role=Role.MEDIA)


def authenticate(request: web.Request, ctx: AppContext) -> Principal | None:
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'")
    if not token.isascii():  # tokens are ASCII; other bytes arrive as lone surrogates that cannot be encoded
        raise unauthorized("the access token holds characters no token has")
    try:
        return ctx.access_tokens.verify(token.strip(), ctx.clock.now())
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc


async def require_live_session(ctx: AppContext, session_id: str) -> None:
    """A token's session must still be open: signing out or changing the password ends it at once."""
    async with ctx.read_sessions() as session:
        live = await session_is_live(session, session_id, ctx.clock.now())
    if not live:
        raise unauthorized("this sign-in has ended (signed out, password changed or expired): sign in again")


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, found without recursion (and
    without parsing): brackets inside strings are skipped. Malformed text gives some number; the
    parser then reports what is wrong with it."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


async def _read_json(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ProblemError(413, "payload-too-large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ProblemError(413, "payload-too-large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    ctype = request.content_type
    if raw and ctype not in ("application/json", "application/octet-stream") and not ctype.endswith("+json"):
        raise ProblemError(415, "unsupported-media-type", f"expected application/json, got {ctype}")
    if b"\\u0000" in raw or b"\x00" in raw:  # PostgreSQL text cannot hold NUL: refuse it up front
        raise bad_request("NUL characters are not allowed", slug="nul-character")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise bad_request(f"JSON bodies may nest arrays and objects at most {MAX_JSON_DEPTH} levels deep",
                          slug="too-deeply-nested", max_depth=MAX_JSON_DEPTH)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}", slug="malformed-json") from exc
    if data is None:
        raise bad_request("a JSON body is required", slug="missing-body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from exc


async def _read_raw(request: web.Request, endpoint: Endpoint) -> bytes:
    if request.content_type not in endpoint.raw_body:
        raise ProblemError(415, "unsupported-media-type",
                           f"expected one of {', '.join(endpoint.raw_body)}, got {request.content_type}")
    if request.content_length is not None and request.content_length > endpoint.raw_max_bytes:
        raise ProblemError(413, "payload-too-large", f"bodies are limited to {endpoint.raw_max_bytes} bytes")
    raw = await request.content.read(endpoint.raw_max_bytes + 1)
    if len(raw) > endpoint.raw_max_bytes:
        raise ProblemError(413, "payload-too-large", f"bodies are limited to {endpoint.raw_max_bytes} bytes")
    if not raw:
        raise bad_request("the request body is empty", slug="missing-body")
    return raw


def _serialise(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_serialise(v) for v in value]
    return value


def _fingerprint(request: web.Request, body: bytes | None) -> str:
    h = hashlib.sha256()
    h.update(f"{request.method} {request.path}?{request.query_string}".encode())
    h.update(body or b"")
    return h.hexdigest()


def _aiohttp_handler(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CONTEXT]
        if any("\x00" in v for v in request.match_info.values()) or any(
                "\x00" in k or "\x00" in v for k, v in request.query.items()):
            raise bad_request("NUL characters are not allowed", slug="nul-character")
        principal = authenticate_media_node(request, ctx) if Role.MEDIA in endpoint.roles else authenticate(
            request, ctx)
        if not endpoint.public:
            if principal is None:
                raise unauthorized()
            if principal.role not in endpoint.roles:
                raise forbidden(f"the {principal.role.value} role may not {endpoint.summary.lower()}")
        if principal is not None and principal.session_id is not None:
            await require_live_session(ctx, principal.session_id)
        if principal is not None and principal.enrolling and not endpoint.during_enrolment:
            raise ProblemError(403, "second-factor-enrolment-required",
                               "set up two-step sign-in first (POST /v1/me/second-factor/setup, then /confirm)")

        query = None
        if endpoint.query is not None:
            try:
                query = endpoint.query.model_validate(dict(request.query))
            except ValidationError as exc:
                raise validation_problem(exc, "query") from exc

        body: BaseModel | None = None
        raw: bytes | None = None
        if endpoint.raw_body:
            raw = await _read_raw(request, endpoint)
        elif endpoint.body is not None:
            body = await _read_json(request, endpoint.body)

        idem_key: str | None = None
        fingerprint = ""
        if endpoint.idempotent:
            idem_key = request.headers.get("Idempotency-Key")
            if not idem_key:
                raise bad_request("this request moves money: send an Idempotency-Key header",
                                  slug="idempotency-key-required")
            if not _IDEMPOTENCY_KEY.match(idem_key):
                raise bad_request("Idempotency-Key must be 8-200 characters of A-Z a-z 0-9 _ - : .",
                                  slug="idempotency-key-invalid")
            raw_json = body.model_dump_json().encode() if body is not None else raw
            fingerprint = _fingerprint(request, raw_json)
            assert principal is not None
            # Fast path: a key whose answer is committed replays without a write transaction.
            replay = await idempotency.stored_response(ctx, principal.key, idem_key, fingerprint)
            if replay is not None:
                return replay

        maker = ctx.sessions if endpoint.writes and not endpoint.own_transactions else ctx.read_sessions
        api_request: ApiRequest[Any, Any] = ApiRequest(request, ctx, session=None,  # type: ignore[arg-type]
                                                       principal=principal, body=body, query=query, raw=raw)
        try:
            async with maker() as session:
                api_request.session = session
                async with session.begin():
                    claim: str | None = None
                    if idem_key is not None and principal is not None:
                        # Before the handler: copies of this request wait here for this one (see idempotency.py).
                        claim = await idempotency.claim(session, principal.key, idem_key, fingerprint,
                                                        ctx.clock.now())
                    result = await endpoint.handler(api_request)
                    payload = None
                    if isinstance(result, web.StreamResponse):
                        response: web.StreamResponse = result
                    elif isinstance(result, BaseModel):  # pydantic's own encoder is the fast path
                        text = result.model_dump_json()
                        response = web.Response(text=text, status=endpoint.status, content_type="application/json")
                        if idem_key is not None:
                            payload = json.loads(text)
                    else:
                        payload = _serialise(result)
                        response = web.json_response(payload, status=endpoint.status, dumps=_dumps)
                    if claim is not None:
                        await idempotency.complete(session, claim, response.status, payload or {})
        except IntegrityError:
            await _run(api_request.on_rollback)
            if idem_key is not None and principal is not None:
                # A copy with this key committed first (our claim failed): answer what it answered.
                replay = await idempotency.stored_response(ctx, principal.key, idem_key, fingerprint)
                if replay is not None:
                    return replay
            raise ProblemError(409, "conflict", "the request conflicted with a concurrent change; retry it") from None
        except BaseException:
            await _run(api_request.on_rollback)
            raise
        await _run(api_request.after_commit)
        return response

    handle.__name__ = endpoint.handler.__name__
    return handle


async def _run(callbacks: list[Callable[[], Awaitable[None]]]) -> None:
    for cb in callbacks:
        await cb()


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
