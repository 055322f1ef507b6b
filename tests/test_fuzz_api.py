"""Property-based tests of every public route against the OpenAPI document (schemathesis).

Properties: no input yields a 5xx; every error is application/problem+json; a rejected request
writes nothing (row counts of every table are unchanged after any 4xx). Runs against a real
server on a loopback port with a real SQLite database, as an operator and as a visitor; half the
examples address real rows (a seeded facility with one of everything) so that fuzzed bodies get
past the 404s and into the handlers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import schemathesis
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control_api.app import build_routes, create_app, start_site
from control_api.auth import Principal, Role, hash_password
from control_api.context import CONTEXT
from control_api.db.engine import make_engine
from control_api.db.migrate import upgrade
from control_api.db.models import Base, User
from control_api.openapi import build_openapi
from openvisit.settings import Mode, Settings
from tests.support_world import seed_facility

schema = schemathesis.openapi.from_dict(build_openapi(build_routes()))


@dataclass
class LiveServer:
    base_url: str
    db_path: Path
    tokens: dict[str, str]
    ids: dict[str, str]  # path-parameter name -> a real id, so fuzzed bodies reach the handlers

    def row_counts(self) -> dict[str, int]:
        """Rows per table; left out are the audit log (a refused attempt on something audited, a
        privileged visit or a visit's type, is written there on purpose) and the failed sign-in
        counters with the notice mail they may send (a wrong password is counted on purpose)."""
        with sqlite3.connect(self.db_path) as conn:
            counts = {t.name: conn.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]
                      for t in Base.metadata.sorted_tables
                      if not t.name.startswith("audit_") and t.name != "login_throttles"}
            counts["mail_messages"] = conn.execute(
                "SELECT count(*) FROM mail_messages WHERE kind != 'sign-in-blocked'").fetchone()[0]
            return counts


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    db_path = data_dir / "openvisit.sqlite3"
    cfg = Settings(mode=Mode.TEST, data_dir=data_dir, database_url=f"sqlite+aiosqlite:///{db_path}")
    loop = uvloop.new_event_loop()
    started = threading.Event()
    state: dict[str, object] = {}

    async def start() -> None:
        engine = make_engine(cfg.effective_database_url)
        await upgrade(engine)
        await engine.dispose()
        app = create_app(cfg, run_sweeper=False)
        runner, port = await start_site(app, "127.0.0.1", 0)
        ctx = app[CONTEXT]
        tokens = {}
        users = {}
        async with ctx.sessions() as session, session.begin():
            for role in (Role.OPERATOR, Role.VISITOR, Role.ATTORNEY):
                user = User(email=f"fuzz-{role.value}@example.org", password_hash=hash_password("x" * 12),
                            role=role.value, legal_name="Fuzz", created_at=ctx.clock.now())
                session.add(user)
                await session.flush()
                users[role] = user
                tokens[role.value] = ctx.access_tokens.issue(Principal(user.id, role), ctx.clock.now())[0]
        ids = await seed_facility(ctx.sessions, "fuzz", ctx.clock.now(), users[Role.VISITOR], users[Role.ATTORNEY])
        state.update(runner=runner, port=port, tokens=tokens, ids=ids)
        started.set()

    def serve() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30), "server did not start"
    yield LiveServer(f"http://127.0.0.1:{state['port']}", db_path, state["tokens"],  # type: ignore[arg-type]
                     state["ids"])  # type: ignore[arg-type]

    async def stop() -> None:
        await state["runner"].cleanup()  # type: ignore[attr-defined]

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _check(case: schemathesis.Case, server: LiveServer, role: str) -> None:
    # Every other example uses real ids, so the fuzzed body and query meet real rows.
    if case.path_parameters and int(hashlib.sha256(repr(case.body).encode()).hexdigest(), 16) % 2 == 0:
        case.path_parameters = {k: server.ids.get(k, v) for k, v in case.path_parameters.items()}
    before = server.row_counts()
    headers = {"Authorization": f"Bearer {server.tokens[role]}"}
    response = case.call(base_url=server.base_url, headers=headers, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]
        assert content_type.startswith("application/problem+json"), response.text
        body = response.json()
        assert body["status"] == response.status_code and body["detail"]
        after = server.row_counts()
        assert after == before, f"{case.method} {case.formatted_path} wrote despite {response.status_code}"


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_operator_never_gets_5xx_or_partial_writes(case: schemathesis.Case, live_server: LiveServer) -> None:
    _check(case, live_server, "operator")


@schema.parametrize()
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_visitor_never_gets_5xx_or_partial_writes(case: schemathesis.Case, live_server: LiveServer) -> None:
    _check(case, live_server, "visitor")


# ------------------------------------------------------------------ edge values (issue 12)

_OPENAPI = build_openapi(build_routes())
_OPERATIONS = [(method.upper(), path, op) for path, item in _OPENAPI["paths"].items()
               for method, op in item.items() if method in {"get", "post", "put", "patch", "delete"}]
_EDGE_VALUES: list[object] = [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:00+00:00", "9999-12-30", "0001-01-01", "2024-02-30",
    "2030-01-01T00:00:00-23:59", "2030-01-01T00:00:00", 10**400, -(10**30), 1e308, -1e308, 2**63, -(2**63) - 1,
    "\u202eevil\u202c", "\U0001f600" * 50, "e\u0301" * 100, "\ufeff", "\uffff", "\ud800", "a\udfffb", "x" * 5000,
    "", " ", "../../etc/passwd", "%00", True, [], {}, None,
]


def _edge() -> st.SearchStrategy[object]:
    nested = st.integers(33, 2000).map(lambda n: json.loads("[" * n + "]" * n) if n < 900 else "[" * n)
    return st.one_of(st.sampled_from(_EDGE_VALUES), nested)


def _pct(value: object) -> str:
    """Percent-encoded UTF-8; lone surrogates go out as their (invalid) UTF-8 bytes."""
    return quote(str(value).encode("utf-8", "surrogatepass"), safe="")


def _body_properties(op: dict[str, object]) -> list[str]:
    content = (op.get("requestBody") or {}).get("content", {})  # type: ignore[attr-defined]
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return []
    if "$ref" in schema:
        schema = _OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("properties", {}))


@pytest.mark.parametrize(("method", "path", "op"), _OPERATIONS, ids=[f"{m} {p}" for m, p, _ in _OPERATIONS])
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_edge_values_never_5xx(method: str, path: str, op: dict[str, object], live_server: LiveServer,
                               data: st.DataObject) -> None:
    """Extreme dates and offsets, deep nesting, huge numbers and odd unicode in the path, the
    query and the body of every route: a 4xx problem+json at worst, never a 5xx."""
    params = op.get("parameters", [])
    url_path = path
    query: dict[str, str] = {}
    for p in params:  # type: ignore[attr-defined]
        if p["in"] == "path":
            value = live_server.ids.get(p["name"], "x") if data.draw(st.booleans()) else data.draw(_edge())
            url_path = url_path.replace("{" + p["name"] + "}", _pct(value))
        elif p["in"] == "query" and data.draw(st.booleans()):
            query[p["name"]] = _pct(data.draw(_edge()))
    body: object = None
    names = _body_properties(op)
    if names:
        body = {name: data.draw(_edge()) for name in data.draw(st.lists(st.sampled_from(names), unique=True))}
    elif method != "GET" and data.draw(st.booleans()):
        body = data.draw(_edge())
    role = data.draw(st.sampled_from(["operator", "visitor"]))
    headers = {"Authorization": f"Bearer {live_server.tokens[role]}", "Idempotency-Key": f"edge-{uuid.uuid4().hex}"}
    kw: dict[str, object] = {}
    if body is not None:
        kw = {"data": json.dumps(body).encode(), "headers": {**headers, "Content-Type": "application/json"}}
    target = live_server.base_url + url_path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    response = requests.request(method, target,
                                headers=kw.pop("headers", headers), timeout=30, **kw)  # type: ignore[arg-type]
    assert response.status_code < 500, f"{method} {url_path} {query} {body!r:.300}: {response.text}"
    if response.status_code >= 400:
        assert response.headers.get("Content-Type", "").startswith("application/problem+json"), response.text
        assert response.json()["detail"]
