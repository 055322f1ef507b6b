"""Telling "the database is not answering" apart from a bug, and logging an outage once.

When PostgreSQL stops or restarts, every request and every sweep fails with a connection error.
Those are not bugs: the right answer is 503 with Retry-After (the client retries, nothing was
written because every request is one transaction), one WARNING when the database first stops
answering and one INFO line when it answers again, instead of a traceback per request.

What the drivers actually raise (observed with asyncpg 0.32, SQLAlchemy 2.1, PostgreSQL 15,
under asyncio and uvloop):

- server stopped, new connection: a bare ``ConnectionRefusedError`` (not wrapped by SQLAlchemy);
  unknown host: ``socket.gaierror``; unreachable host: ``TimeoutError`` after the connect timeout.
- pooled connection whose server was stopped (``pg_ctl stop -m fast``): ``DBAPIError`` with
  ``connection_invalidated=True``, from asyncpg ``ConnectionDoesNotExistError`` caused by
  ``AdminShutdownError`` (57P01). Killed mid-query (``-m immediate``): ``ConnectionDoesNotExistError``.
- while the server starts up or shuts down: ``DBAPIError`` from ``CannotConnectNowError`` (57P03,
  "not yet accepting connections" / "shutting down").
- a pool whose connections never come back: ``sqlalchemy.exc.TimeoutError``.
- SQLite under write contention: ``OperationalError`` "database is locked" (SQLITE_BUSY): a short
  wait, not an outage (``Unavailability.BUSY``).

Everything else (``ProgrammingError``, ``IntegrityError``, ``DataError``, a statement timeout...)
is not classified: those stay what they are (409s, 500s with a traceback).
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import time
import traceback
from collections.abc import Callable
from typing import Any

import asyncpg.exceptions as pg
from aiohttp import web
from sqlalchemy import event
from sqlalchemy import exc as sa
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

OUTAGE_RETRY_AFTER_SECONDS = 5
BUSY_RETRY_AFTER_SECONDS = 1

# Server-side conditions that mean "cannot serve now, try again": connection exceptions (class 08),
# shutdown / startup / crash recovery (57P01-57P03), too many connections (53300).
_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,  # includes ConnectionDoesNotExistError (08003)
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.CannotConnectNowError,
    pg.TooManyConnectionsError,
)
# Modules whose frames show that a bare OSError/TimeoutError came from reaching the database,
# not from a payment gateway or a file write elsewhere in the same request.
_DRIVER_MODULES = ("asyncpg.", "aiosqlite.", "sqlalchemy.")
_SQLITE_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


class Unavailability(enum.Enum):
    OUTAGE = "outage"  # the server does not answer (stopped, restarting, unreachable)
    BUSY = "busy"  # it answers but is locked (SQLite contention): retry shortly


def database_unavailability(exc: BaseException) -> Unavailability | None:
    """Why the database could not serve, or None if `exc` is not about availability (a bug)."""
    if isinstance(exc, sa.TimeoutError):  # pool checkout timed out: no connection came back
        return Unavailability.OUTAGE
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:  # the dialect saw the connection die (is_disconnect)
            return Unavailability.OUTAGE
        return _driver_unavailability(exc.orig) if exc.orig is not None else None
    if isinstance(exc, sa.StatementError):  # wraps non-DBAPI errors raised while executing
        return _driver_unavailability(exc.orig) if isinstance(exc.orig, BaseException) else None
    return _driver_unavailability(exc)


def is_database_outage(exc: BaseException) -> bool:
    """True when `exc` means the database is temporarily unavailable and retrying later is right
    (stopped, restarting, unreachable, or SQLite locked); False for bugs and rule violations."""
    return database_unavailability(exc) is not None


def _driver_unavailability(exc: BaseException) -> Unavailability | None:
    """Look at the driver's exception and its explicit causes (SQLAlchemy's adapter raises its own
    error `from` asyncpg's). Implicit context is not followed: a bug raised while handling an
    outage is still a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        if isinstance(current, _PG_UNAVAILABLE):
            return Unavailability.OUTAGE
        if isinstance(current, pg.InterfaceError) and "connection is closed" in str(current):
            return Unavailability.OUTAGE
        if isinstance(current, sqlite3.OperationalError) and _sqlite_busy(current):
            return Unavailability.BUSY
        current = current.__cause__
    if isinstance(exc, (OSError, TimeoutError)) and _raised_by_driver(exc):
        return Unavailability.OUTAGE
    return None


def _sqlite_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _SQLITE_BUSY_CODES
    message = str(exc).lower()
    return "database is locked" in message or "database table is locked" in message


def _raised_by_driver(exc: BaseException) -> bool:
    """A connect failure reaches us as a bare OSError; its traceback runs through the driver."""
    for frame, _line in traceback.walk_tb(exc.__traceback__):
        if str(frame.f_globals.get("__name__", "")).startswith(_DRIVER_MODULES):
            return True
    return False


def describe(exc: BaseException) -> str:
    """One short line naming the cause, without SQL or parameters (which may hold personal data)."""
    cause: BaseException = exc.orig if isinstance(exc, sa.DBAPIError) and exc.orig is not None else exc
    while cause.__cause__ is not None and type(cause).__module__.startswith("sqlalchemy."):
        cause = cause.__cause__  # the adapter's wrapper: name asyncpg's exception instead
    text = (str(cause).strip().splitlines() or [""])[0][:200]
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


class OutageTracker:
    """Logs one WARNING when the database stops answering and one INFO when it answers again.

    `failed` is called by whoever met the error (a request, the sweeper). The end is seen by the
    engine's events: after an outage the pool is discarded, so the first new connection that
    succeeds ("connect") proves the database is back. A pooled connection that passes its
    pre-ping ("checkout") also ends it, but only once the outage is `confirm_after` seconds old:
    while a server shuts down, a connection it has not closed yet can still answer for a moment,
    and that must not split one outage into several.
    """

    def __init__(self, name: str = "database", *, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic, confirm_after: float = 5.0) -> None:
        self.name = name
        self.outages = 0
        self.confirm_after = confirm_after
        self._log = logger or log
        self._clock = clock
        self._since: float | None = None
        self._failures = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException, where: str) -> bool:
        """Note an outage error met at `where`; True if this began a new outage (and was logged)."""
        self._failures += 1
        if self._since is not None:
            self._log.debug("%s still unavailable at %s: %s", self.name, where, describe(exc))
            return False
        self._since = self._clock()
        self._failures = 1
        self.outages += 1
        self._log.warning("%s stopped answering (first seen at %s: %s); answering 503 until it is back",
                          self.name, where, describe(exc))
        return True

    def answered(self) -> None:
        """The database answered: end the outage, if any, with one line saying how long it lasted."""
        if self._since is None:
            return
        seconds = self._clock() - self._since
        failures, self._since, self._failures = self._failures, None, 0
        self._log.info("%s answers again after %.1f s out (%d requests or sweeps failed meanwhile)",
                       self.name, seconds, failures)

    def watch(self, engine: AsyncEngine) -> None:
        """Listen to `engine`'s pool for the evidence that ends an outage."""

        def _connected(_dbapi_connection: Any, _record: Any) -> None:
            self.answered()

        def _checked_out(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            if self._since is not None and self._clock() - self._since >= self.confirm_after:
                self.answered()

        event.listen(engine.sync_engine, "connect", _connected)
        event.listen(engine.sync_engine, "checkout", _checked_out)


DB_OUTAGE = web.AppKey("openvisit_db_outage", OutageTracker)
