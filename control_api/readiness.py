"""The control API's readiness checks (issue 14): database, recordings folder, media plane.

`/readyz` (openvisit/health.py) answers 503 naming what is missing. The database must answer and
its schema must be at the migrations' head (an upgrade whose `openvisit migrate` was forgotten is
caught here, not at the first request that needs a new column). The media plane is the embedded
SFU inside `openvisit serve`, or at least one standalone media node holding a live lease. Further
checks (the TURN relay) are added with `app[READINESS].add(name, check)`.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import cache

from aiohttp import web
from sqlalchemy import func, select, text

from control_api.context import CONTEXT
from control_api.db.models import MediaNode
from control_api.db.outage import describe
from openvisit.health import CheckResult, Readiness, install_health, recordings_folder_check
from openvisit.settings import Settings

log = logging.getLogger(__name__)


@cache
def migration_heads() -> frozenset[str]:
    """The revisions a fully migrated database is at (read once from the migration scripts)."""
    from alembic.script import ScriptDirectory  # not at import: alembic logs its plugins when loaded

    from control_api.db.migrate import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


STARTING = CheckResult(False, "the application is still starting")


def install_readiness(app: web.Application, settings: Settings, *, embedded_media: bool) -> Readiness:
    """`/livez` and `/readyz` for the control API, with its checks."""
    readiness = Readiness()
    last_cause: list[str] = [""]

    async def database() -> CheckResult:
        if CONTEXT not in app:
            return STARTING
        try:
            async with app[CONTEXT].engine.connect() as conn:
                versions = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
        except Exception as exc:
            cause = describe(exc)  # may name hosts: logged for the operator, not shown to anonymous callers
            if cause != last_cause[0]:
                log.warning("readiness: the database does not answer: %s", cause)
                last_cause[0] = cause
            return CheckResult(False, f"the database does not answer ({type(exc).__name__}): check that it runs "
                                      "and the database_url setting")
        last_cause[0] = ""
        heads = migration_heads()
        if versions != heads:
            have = ", ".join(sorted(versions)) or "none"
            return CheckResult(False, f"the database schema is at {have}, this release needs "
                                      f"{', '.join(sorted(heads))}: run `openvisit migrate`")
        return CheckResult(True, f"reachable, schema at {', '.join(sorted(heads))}")

    async def media() -> CheckResult:
        if CONTEXT not in app:
            return STARTING
        ctx = app[CONTEXT]
        if embedded_media:
            if ctx.media is None:
                return CheckResult(False, "the embedded media plane has not started")
            return CheckResult(True, "the embedded media plane accepts visits")
        since = ctx.clock.now() - timedelta(seconds=settings.media_lease_seconds)
        async with ctx.read_sessions() as session:
            nodes = await session.scalar(select(func.count()).select_from(MediaNode).where(
                MediaNode.lost_at.is_(None), MediaNode.last_seen_at >= since))
        if not nodes:
            return CheckResult(False, "no media node holds a live lease: start `openvisit sfu` "
                                      "(it must reach this API with the media secret)")
        return CheckResult(True, f"{nodes} media node(s) with a live lease")

    cache_seconds = settings.readiness_cache_seconds
    readiness.add("database", database, cache_seconds=cache_seconds)
    readiness.add("recordings", recordings_folder_check(settings.recordings_dir, settings.recordings_min_free_mb << 20),
                  cache_seconds=cache_seconds)
    readiness.add("media", media, cache_seconds=cache_seconds)
    install_health(app, readiness)
    return readiness
