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
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
import uvloop
from hypothesis import HealthCheck, settings

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
        """Rows per table; the audit log is left out: a refused attempt on something audited
        (a privileged visit, a visit's type) is written there on purpose."""
        with sqlite3.connect(self.db_path) as conn:
            return {t.name: conn.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0]
                    for t in Base.metadata.sorted_tables if not t.name.startswith("audit_")}


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
