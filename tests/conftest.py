"""Shared fixtures: a real database (SQLite and PostgreSQL), the real app on a loopback port.

API and data-layer tests take the `api` fixture, which is parametrised over both databases.
PostgreSQL must be up on 127.0.0.1:5432; under CI=true a missing server fails the run, on a
developer machine those cases are skipped with the reason.

No test may leave an unhandled exception in the server log (issue 12): `ServerErrorCheck` fails
the test during which one was logged (`@pytest.mark.allow_server_errors` opts out).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import uvloop
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy import text

from control_api.app import create_app
from control_api.auth import use_password_hasher
from control_api.context import CONTEXT, AppContext
from control_api.db.engine import make_engine
from control_api.db.migrate import upgrade
from control_api.db.models import Base
from control_api.payments.simulated_gateway import SimulatedPaymentGateway
from control_api.problems import UNHANDLED_LOGGER
from openvisit.settings import Mode, Settings
from sfu.aiortc_adapter import restrict_host_candidates
from tests.support import Api

PG_ADMIN_URL = os.environ.get("OPENVISIT_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# pytester: tests/test_bad_input.py runs the server error check on a sample session;
# tests.support_browser: the `chromium` fixture for the browser tests.
pytest_plugins = ("pytester", "tests.support_browser")


def pytest_configure(config: pytest.Config) -> None:
    # Real argon2id, cheap parameters: hashing cost is not what these tests are about.
    use_password_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    config.pluginmanager.register(ServerErrorCheck(), "openvisit-server-error-check")


# ------------------------------------------------------------------ unhandled exceptions in the server log

# Where an unhandled exception in any in-process aiohttp app (the API, the SFU, signaling, test
# servers) is logged: our problem middleware's 500s, and aiohttp's own "Unhandled exception" /
# "Error handling request" (a handler that failed after its response started, a bad return value).
SERVER_ERROR_LOGGERS = (UNHANDLED_LOGGER, "aiohttp.server", "aiohttp.web")
ALLOW_MARKER = "allow_server_errors"
# Tests in files this check's author does not own that provoke a 500 on purpose; their owners
# should move them to @pytest.mark.allow_server_errors.
DELIBERATE_SERVER_ERRORS = {
    "tests/test_database_outage.py::test_sqlite_locked_is_a_503_with_a_short_retry_after":
        "GET /buggy queries a missing table: a deliberate 500",
}


def is_unhandled(record: logging.LogRecord) -> bool:
    """An ERROR on a server logger, except aiohttp's parser refusing a malformed request (a 4xx
    that aiohttp's stock handler logs at ERROR; the app's own runner answers it as a problem)."""
    if record.levelno < logging.ERROR:
        return False
    exc = record.exc_info[1] if record.exc_info else None
    return not (isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 500) < 500)


class ServerErrorLog(logging.Handler):
    """Collects unhandled-exception records from the server loggers (any thread)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self._taking = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if is_unhandled(record):
            with self._taking:
                self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        with self._taking:
            taken, self.records = self.records, []
        return taken


def describe_server_errors(records: list[logging.LogRecord]) -> str:
    lines = [f"the server logged {len(records)} unhandled exception(s) (a client got a 5xx or a broken answer):"]
    for record in records[:10]:
        message = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and str(exc) not in message:
            message += f" -- {type(exc).__name__}: {exc}"
        lines.append(f"  [{record.name}] {message[:800]} ({record.pathname}:{record.lineno})")
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info).splitlines()
            lines.extend("      " + line for line in trace[-6:])
    if len(records) > 10:
        lines.append(f"  ... and {len(records) - 10} more")
    lines.append(f"(a test that provokes them on purpose: @pytest.mark.{ALLOW_MARKER})")
    return "\n".join(lines)


class ServerErrorCheck:
    """A plugin: the test during which a server logged an unhandled exception fails (in its call
    phase; in its teardown if logged there); what is logged outside any test fails the session."""

    def __init__(self) -> None:
        self.log = ServerErrorLog()
        self.leftover: list[logging.LogRecord] = []

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", f"{ALLOW_MARKER}: the test provokes unhandled server errors on purpose")
        for name in SERVER_ERROR_LOGGERS:
            logging.getLogger(name).addHandler(self.log)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        for name in SERVER_ERROR_LOGGERS:
            logging.getLogger(name).removeHandler(self.log)

    @staticmethod
    def _allowed(item: pytest.Item) -> bool:
        return item.get_closest_marker(ALLOW_MARKER) is not None or item.nodeid in DELIBERATE_SERVER_ERRORS

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self.leftover += self.log.take()  # logged between tests (a background thread): the session's
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            result = yield
        except BaseException:
            self._check(item, "call", raise_=False)  # the test failed already: add to its report only
            raise
        self._check(item, "call")
        return result

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            result = yield
        except BaseException:
            self._check(item, "teardown", raise_=False)
            raise
        self._check(item, "teardown")
        return result

    def _check(self, item: pytest.Item, when: str, raise_: bool = True) -> None:
        records = self.log.take()
        if not records or self._allowed(item):
            return
        message = describe_server_errors(records)
        if not raise_:
            item.add_report_section(when, "server errors", message)
            return
        pytest.fail(message, pytrace=False)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        records = self.leftover + self.log.take()
        if records:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(describe_server_errors(records), red=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
def gateway() -> SimulatedPaymentGateway:
    return SimulatedPaymentGateway()


@pytest.fixture
async def api(settings: Settings, gateway: SimulatedPaymentGateway) -> AsyncIterator[Api]:
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
