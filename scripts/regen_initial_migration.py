"""Development helper: regenerate the initial Alembic migration from the models.

Only valid while no release has shipped (nobody has a database at revision 0001 yet).
Usage: .venv/bin/python scripts/regen_initial_migration.py
"""

import asyncio
import tempfile
from pathlib import Path

from alembic import command

from control_api.db.engine import make_engine
from control_api.db.migrate import MIGRATIONS_DIR, alembic_config


async def main() -> None:
    target = MIGRATIONS_DIR / "versions" / "0001_initial_schema.py"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'gen.sqlite3'}")

        def generate(conn: object) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")

        async with engine.begin() as conn:
            await conn.run_sync(generate)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
