"""Development helper: autogenerate the next Alembic migration from the models.

Usage: .venv/bin/python scripts/new_migration.py REV_ID "message"
Upgrades a scratch SQLite database to the current head, then writes versions/REV_ID_*.py with
the difference (an unreleased REV_ID may be regenerated: its old file is replaced). Review the
result: data steps (like seeding a row) are added by hand below the marker it prints.
"""

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command

from control_api.db.engine import make_engine
from control_api.db.migrate import MIGRATIONS_DIR, alembic_config


async def main(rev_id: str, message: str) -> None:
    for old in (MIGRATIONS_DIR / "versions").glob(f"{rev_id}_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'gen.sqlite3'}")

        def generate(conn: object) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)

        async with engine.begin() as conn:
            await conn.run_sync(generate)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
