"""Engine and session factory for SQLite (default) and PostgreSQL.

SQLite write transactions start with ``BEGIN IMMEDIATE`` so that two concurrent bookings
serialise on the database lock instead of both reading "free" and both writing (rule B8).
PostgreSQL gets the same guarantee from row locks taken by the booking service.

PostgreSQL connections are pinged when taken from the pool (``pool_pre_ping``): after the server
restarts, every pooled connection is dead, and without the ping the first request on each would
fail. A failed ping discards the whole pool, so recovery needs no restart of ours. Connecting is
bounded (asyncpg waits 60 s by default) so that a server that does not answer yields a prompt 503
(see control_api/db/outage.py) instead of a hung request.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

PG_CONNECT_TIMEOUT_SECONDS = 5.0


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
            # Take transaction control away from the driver so BEGIN is ours to emit.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    connect_args = {"timeout": PG_CONNECT_TIMEOUT_SECONDS, **kwargs.pop("connect_args", {})}
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True,
                               connect_args=connect_args, **kwargs)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
