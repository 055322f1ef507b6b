"""Shared fixtures: a real database (SQLite and PostgreSQL), the real app on a loopback port.

API and data-layer tests take the `api` fixture, which is parametrised over both databases.
PostgreSQL must be up on 127.0.0.1:5432; under CI=true a missing server fails the run, on a
developer machine those cases are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import uvloop
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy import text

from control_api.app import create_app
from control_api.auth import use_password_hasher
from control_api.context import CONTEXT, AppContext
from control_api.db.engine import make_engine
from control_api.db.migrate import upgrade
from control_api.db.models import Base
from control_api.payments.test_gateway import TestPaymentGateway
from openvisit.settings import Mode, Settings
from sfu.aiortc_adapter import restrict_host_candidates
from tests.support import Api

PG_ADMIN_URL = os.environ.get("OPENVISIT_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    # Real argon2id, cheap parameters: hashing cost is not what these tests are about.
    use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    """Every test runs on uvloop, as every server command does."""
    return {"uvloop": uvloop.new_event_loop}


def _run(coro):  # run setup coroutines outside the test's loop
    return asyncio.run(coro)


@pytest.fixture
def loopback_only() -> Iterator[None]:
    """ICE candidates on 127.0.0.1 only: every WebRTC test stays on loopback (testing-notes.md)."""
    undo = restrict_host_candidates(["127.0.0.1"])
    yield
    undo()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"

    async def build() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
        await upgrade(engine)
        await engine.dispose()

    _run(build())
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated once."""
    name = f"openvisit_test_{uuid.uuid4().hex[:10]}"
    admin_url = PG_ADMIN_URL

    async def create() -> str | None:
        engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        except (OSError, Exception) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        engine = make_engine(url)
        await upgrade(engine)
        await engine.dispose()
        return None

    error = _run(create())
    if error is not None:
        message = f"PostgreSQL at {admin_url} is not available: {error}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    yield url

    async def drop() -> None:
        engine = make_engine(admin_url, isolation_level="AUTOCOMMIT")
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await engine.dispose()

    _run(drop())


async def _truncate_postgres(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        # A test that played a DBA disabled the audit log's append-only triggers: every test
        # starts with them on again (the schema is shared by the whole session).
        await conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "openvisit.sqlite3"
        shutil.copyfile(template, target)
        return f"sqlite+aiosqlite:///{target}"
    url = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(mode=Mode.TEST, data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture
def gateway() -> TestPaymentGateway:
    return TestPaymentGateway()


@pytest.fixture
async def api(settings: Settings, gateway: TestPaymentGateway) -> AsyncIterator[Api]:
    """The real application on a loopback port, with a client that knows our auth scheme."""
    if settings.database_url and settings.database_url.startswith("postgresql"):
        await _truncate_postgres(settings.database_url)
    app = create_app(settings, gateway=gateway, run_sweeper=False)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        ctx: AppContext = app[CONTEXT]
        yield Api(client, ctx, gateway)
    finally:
        await client.close()
