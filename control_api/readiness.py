"""The control API's readiness checks (issue 14): database, recordings folder, media plane.

`/readyz` (openvisit/health.py) answers 503 naming what is missing. The database must answer and
its schema must be at the migrations' head (an upgrade whose `openvisit migrate` was forgotten is
caught here, not at the first request that needs a new column). The media plane is the embedded
SFU inside `openvisit serve`, or at least one standalone media node holding a live lease. With a
TURN relay configured, `turn` allocates a relay address with credentials minted as for a visit:
reported, but not required (a relay outage hurts only the visitors who need it; `degraded`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
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
    if settings.turn_urls and settings.turn_secret:
        secret = settings.turn_secret

        async def turn() -> CheckResult:
            from control_api.domain.turn_credentials import mint
            from openvisit.turn_probe import allocate

            credential = mint(secret, "openvisit-readiness", datetime.now(UTC) + timedelta(minutes=5))
            refused = []
            for number, url in enumerate(settings.turn_urls, 1):  # by position: URLs are not shown
                try:
                    await allocate(url, credential.username, credential.credential)
                except Exception as exc:
                    log.warning("readiness: TURN relay %s: %s: %s", url, type(exc).__name__, exc)
                    refused.append(f"#{number} ({'credentials refused' if '401' in str(exc) else 'no answer'})")
            if refused:
                return CheckResult(False, f"TURN URL(s) {', '.join(refused)} of {len(settings.turn_urls)} fail: "
                                          "run `openvisit doctor` for details")
            return CheckResult(True, f"the relay accepts minted credentials on all {len(settings.turn_urls)} URL(s)")

        readiness.add("turn", turn, cache_seconds=30.0, timeout=8.0, required=False)
    install_health(app, readiness)
    return readiness
