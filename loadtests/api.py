"""A small blocking client of the public API for the provisioning and capacity commands (urllib:
they run outside Locust and outside the load's event loop)."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        detail = body.get("detail") if isinstance(body, dict) else body
        super().__init__(f"{method} {path}: HTTP {status}: {detail}")
        self.status = status
        self.body = body

    @property
    def slug(self) -> str:
        """The problem type's last path segment (e.g. `second-factor-required`)."""
        kind = self.body.get("type", "") if isinstance(self.body, dict) else ""
        return str(kind).rstrip("/").rsplit("/", 1)[-1]


@dataclass
class Api:
    base: str
    token: str | None = None
    insecure: bool = False  # staging with a self-signed certificate

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200, 201, 202)) -> Any:
        h = {"User-Agent": "openvisit-loadtest", **(headers or {})}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base.rstrip("/") + path, data=data, method=method, headers=h)
        context = ssl._create_unverified_context() if self.insecure else None
        try:
            with urllib.request.urlopen(req, timeout=30, context=context) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        if status not in expect:
            raise ApiError(method, path, status, parsed)
        return parsed

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def as_(self, token: str) -> Api:
        return Api(self.base, token, self.insecure)


def totp_code(secret: str) -> str:
    import pyotp

    return str(pyotp.TOTP(secret).now())


def login(api: Api, email: str, password: str, totp_secret: str | None = None) -> Api:
    body: dict[str, Any] = {"email": email, "password": password}
    if totp_secret:
        body["second_factor_code"] = totp_code(totp_secret)
    answer = api.as_("").post("/v1/auth/login", body)
    return api.as_(answer["access_token"])
