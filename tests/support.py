"""Test helpers: an API client that speaks our auth scheme and checks the problem+json contract."""

from __future__ import annotations

import io
import itertools
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp.test_utils import TestClient
from PIL import Image
from sqlalchemy import update

from control_api.auth import Principal, Role, hash_password
from control_api.context import AppContext
from control_api.db.models import AuthSession, User
from control_api.payments.simulated_gateway import SimulatedPaymentGateway

PASSWORD = "correct horse battery"


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    """A real, decodable image (photo IDs are decoded and re-encoded on upload)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 180, 150)).save(buf, format=fmt, **save)
    return buf.getvalue()


PNG = image_bytes()
_counter = itertools.count(1)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str]

    def ok(self, status: int | None = None) -> Any:
        expected = status if status is not None else (200, 201, 204)
        statuses = expected if isinstance(expected, tuple) else (expected,)
        assert self.status in statuses, f"expected {statuses}, got {self.status}: {self.body}"
        return self.body

    def problem(self, status: int, slug: str | None = None) -> dict[str, Any]:
        assert self.status == status, f"expected {status}, got {self.status}: {self.body}"
        assert self.headers.get("Content-Type", "").startswith("application/problem+json"), self.headers
        assert isinstance(self.body, dict) and self.body["status"] == status and self.body["detail"]
        if slug is not None:
            assert self.body["type"].endswith("/" + slug), self.body
        return self.body


@dataclass
class As:
    """Requests made as one principal."""

    api: Api
    token: str | None
    principal_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def headers(self, more: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        h.update(more or {})
        return h

    async def request(self, method: str, path: str, *, json: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None, idempotency_key: str | bool | None = None
                      ) -> Response:
        h = self.headers(headers)
        if idempotency_key is True or (idempotency_key is None and method in ("POST",) and False):
            idempotency_key = f"key-{uuid.uuid4().hex}"
        if isinstance(idempotency_key, str):
            h["Idempotency-Key"] = idempotency_key
        resp = await self.api.client.request(method, path, json=json, data=data, headers=h)
        ctype = resp.headers.get("Content-Type", "")
        body: Any
        if "json" in ctype:
            body = await resp.json(content_type=None)
        else:
            body = await resp.read()
        assert resp.status < 500, f"{method} {path} answered {resp.status}: {body!r}"
        return Response(resp.status, body, dict(resp.headers))

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("POST", path, json=json, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("PUT", path, json=json, **kw)

    async def patch(self, path: str, json: Any = None, **kw: Any) -> Response:
        return await self.request("PATCH", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Response:
        return await self.request("DELETE", path, **kw)


class Api:
    def __init__(self, client: TestClient, ctx: AppContext, gateway: SimulatedPaymentGateway) -> None:
        self.client = client
        self.ctx = ctx
        self.gateway = gateway
        self.anonymous = As(self, None)
        self.callers: list[As] = []

    def track(self, caller: As) -> As:
        self.callers.append(caller)
        return caller

    async def advance(self, operator: As, seconds: int) -> dict[str, Any]:
        """Move the test clock through the API, then give every caller a fresh access token
        (tokens expire by the moved clock, as they would for real) and keep its sign-in open, as
        if each caller had kept renewing it (sessions end after `session_days` unused)."""
        body = (await operator.post("/v1/test-clock/advance", {"seconds": seconds})).ok()
        sessions = []
        for caller in self.callers:
            if caller.token:
                claims = jwt.decode(caller.token, options={"verify_signature": False})
                principal = Principal(claims["sub"], Role(claims["role"]), claims.get("fac"), claims.get("hu"),
                                      session_id=claims.get("sid"))
                caller.token = self.token_for(principal)
                if principal.session_id:
                    sessions.append(principal.session_id)
        if sessions:
            renewed = self.ctx.clock.now() + timedelta(days=self.ctx.settings.session_days)
            async with self.ctx.sessions() as session, session.begin():
                await session.execute(update(AuthSession).where(AuthSession.id.in_(sessions),
                                                                AuthSession.expires_at < renewed)
                                      .values(expires_at=renewed))
        return body

    def token_for(self, principal: Principal) -> str:
        token, _ = self.ctx.access_tokens.issue(principal, self.ctx.clock.now())
        return token

    async def create_user(self, role: Role, facility_id: str | None = None, **fields: Any) -> As:
        """Insert a user directly (staff and operators have no public sign-up) and sign in as it."""
        n = next(_counter)
        async with self.ctx.sessions() as session, session.begin():
            user = User(email=fields.pop("email", f"{role.value}{n}-{uuid.uuid4().hex[:6]}@example.org"),
                        password_hash=hash_password(PASSWORD), role=role.value, facility_id=facility_id,
                        legal_name=fields.pop("legal_name", f"{role.value.title()} {n}"),
                        created_at=self.ctx.clock.now(), email_confirmed_at=self.ctx.clock.now(), **fields)
            session.add(user)
        resp = await self.anonymous.post("/v1/auth/login", {"email": user.email, "password": PASSWORD})
        token = resp.ok()["access_token"]
        return self.track(As(self, token, user.id, {"email": user.email}))

    async def operator(self) -> As:
        return await self.create_user(Role.OPERATOR)

    async def sign_up(self, role: str = "visitor", confirm: bool = True, **overrides: Any) -> As:
        n = next(_counter)
        body: dict[str, Any] = {
            "role": role,
            "email": f"{role}{n}-{uuid.uuid4().hex[:6]}@example.org",
            "password": PASSWORD,
            "legal_name": f"Test {role.title()} {n}",
            "postal_address": "1 Main Street, Springfield, IL 62701",
            "date_of_birth": "1980-05-17",
            "phone": "+1 217 555 0100",
        }
        if role == "attorney":
            body.update(bar_number=f"BAR{n:05d}", bar_state="IL")
        body.update(overrides)
        (await self.anonymous.post("/v1/accounts", body)).ok(202)
        if confirm:
            await self.confirm_email(body["email"])
        token = (await self.anonymous.post("/v1/auth/login", {"email": body["email"],
                                                               "password": PASSWORD})).ok()["access_token"]
        caller = As(self, token, None, {"email": body["email"]})
        caller.principal_id = (await caller.get("/v1/me")).ok()["id"]
        return self.track(caller)

    async def mail(self, to: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The demo outbox for one address, newest first."""
        params = urlencode({"to": to, **({"kind": kind} if kind else {})})
        return list((await self.anonymous.get("/v1/demo/mail?" + params)).ok())

    async def mailed_token(self, to: str, kind: str) -> str:
        """The token in the newest mail of `kind` to `to` (confirmation or reset), as a user would copy it."""
        mails = await self.mail(to, kind)
        assert mails, f"no {kind} mail to {to}"
        match = re.search(r"code: (\S+)", mails[0]["body"])
        assert match, mails[0]["body"]
        return match.group(1)

    async def confirm_email(self, email: str) -> None:
        token = await self.mailed_token(email, "confirm-email")
        (await self.anonymous.post("/v1/auth/confirm-email", {"token": token})).ok()
