"""Liveness and readiness (issue 14): `/livez` says the process runs, `/readyz` says whether it
can serve visits now and, if not, what is missing (database, recordings folder, media plane).

The real `openvisit serve` loses its database (a PostgreSQL database of its own is dropped under
it; the shared server keeps running) and its recordings folder; a standalone `openvisit sfu` over
HTTPS makes a control API without embedded media ready. Liveness stays 200 throughout.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from control_api.db.engine import make_engine
from openvisit.health import CheckResult, Readiness, recordings_folder_check
from tests.conftest import IN_CI, PG_ADMIN_URL
from tests.support import Api
from tests.support_serve import Served, client_context, make_certificate

READY_BOUND_S = 15.0  # a change shows on /readyz within this (checks are cached 1.5 s)


def probe(url: str, context: Any = None) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_until(url: str, status: int, context: Any = None, within: float = READY_BOUND_S) -> dict[str, Any]:
    t0 = time.monotonic()
    seen: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() - t0 < within:
        seen = probe(url, context)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} within {within} s; last: {seen}")


def assert_live(server: Served) -> None:
    assert probe(f"{server.url}/livez") == (200, {"status": "ok"})
    assert probe(f"{server.url}/healthz")[0] == 200  # the older name still answers


# ------------------------------------------------------------------ the database


@pytest.fixture
def own_postgres_database() -> Iterator[str]:
    """A database of this test's own on the shared PostgreSQL server (dropped by the test)."""
    name = f"openvisit_ready_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> str | None:
        engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await engine.dispose()
        return None

    error = asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    if error is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not available: {error}")
        pytest.skip(f"PostgreSQL is not available: {error}")
    try:
        yield name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.slow
@pytest.mark.postgres
def test_readiness_names_the_database_when_it_goes_away(tmp_path: Path, own_postgres_database: str) -> None:
    name = own_postgres_database
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with Served(tmp_path, env={"OPENVISIT_DATABASE_URL": url}) as server:
        ready = wait_until(f"{server.url}/readyz", 200)
        assert ready["status"] == "ready" and ready["missing"] == []
        assert set(ready["checks"]) == {"database", "recordings", "media"}
        assert all(check["ok"] for check in ready["checks"].values())

        async def drop() -> None:  # the database vanishes under the running server
            engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
            async with engine.connect() as conn:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await engine.dispose()

        asyncio.run(drop())
        body = wait_until(f"{server.url}/readyz", 503)
        assert body["status"] == "not ready" and body["missing"] == ["database"], body
        assert "database_url" in body["checks"]["database"]["detail"]
        raw = json.dumps(body)
        assert name not in raw and "postgres" not in raw and "127.0.0.1" not in raw  # nothing about the setup
        assert_live(server)
        assert "readiness: the database does not answer" in server.output()  # the cause, for the operator


# ------------------------------------------------------------------ the recordings folder


@pytest.mark.slow
def test_readiness_names_the_recordings_folder_when_nothing_can_be_written(tmp_path: Path) -> None:
    with Served(tmp_path) as server:
        wait_until(f"{server.url}/readyz", 200)
        recordings = server.data_dir / "recordings"
        shutil.rmtree(recordings, ignore_errors=True)
        recordings.write_text("in the way")  # nothing can be written in it (root ignores permission bits)
        body = wait_until(f"{server.url}/readyz", 503)
        assert body["missing"] == ["recordings"], body
        assert "is a file, not a folder" in body["checks"]["recordings"]["detail"]
        assert str(tmp_path) not in json.dumps(body)
        assert_live(server)
        recordings.unlink()  # fixed: ready again without a restart
        assert wait_until(f"{server.url}/readyz", 200)["missing"] == []


async def test_readiness_names_low_free_space_and_an_unwritable_folder(tmp_path: Path) -> None:
    low = await recordings_folder_check(tmp_path / "recordings", 1 << 60)()
    assert not low.ok and "below the" in low.detail and "recordings_min_free_mb" in low.detail
    ok = await recordings_folder_check(tmp_path / "recordings", 0)()
    assert ok.ok and "writable" in ok.detail
    assert not list((tmp_path / "recordings").iterdir()), "the probe file was left behind"
    if os.geteuid() != 0:  # root writes through permission bits: the file-in-the-way case covers it
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        unwritable = await recordings_folder_check(locked, 0)()
        assert not unwritable.ok and "not writable" in unwritable.detail


# ------------------------------------------------------------------ the schema, and the checks' machinery

pytestmark_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytestmark_sqlite
async def test_readiness_names_a_schema_behind_the_release(api: Api) -> None:
    resp = await api.client.get("/readyz")
    assert resp.status == 200
    async with api.ctx.engine.begin() as conn:
        head = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
        await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        await asyncio.sleep(api.ctx.settings.readiness_cache_seconds + 0.1)
        resp = await api.client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and body["missing"] == ["database"]
        assert "openvisit migrate" in body["checks"]["database"]["detail"] and "0001" in body["checks"][
            "database"]["detail"]
        assert (await api.client.get("/livez")).status == 200
    finally:
        async with api.ctx.engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


async def test_checks_are_bounded_cached_and_contained() -> None:
    runs: list[float] = []

    async def counted() -> CheckResult:
        runs.append(time.monotonic())
        await asyncio.sleep(0.05)
        return CheckResult(True, "fine")

    async def hangs() -> CheckResult:
        await asyncio.sleep(60)
        return CheckResult(True, "never")

    async def breaks() -> CheckResult:
        raise RuntimeError("password=hunter2")  # whatever an exception says stays in the log

    readiness = Readiness()
    readiness.add("counted", counted, cache_seconds=5)
    readiness.add("hangs", hangs, timeout=0.2)
    readiness.add("breaks", breaks)
    with pytest.raises(ValueError, match="twice"):
        readiness.add("counted", counted)
    first, second = await asyncio.gather(readiness.run(), readiness.run())
    assert len(runs) == 1  # concurrent probes share one run, and the answer is kept
    await readiness.run()
    assert len(runs) == 1
    assert first["counted"].ok and not first["hangs"].ok and "0.2 s" in first["hangs"].detail
    assert not first["breaks"].ok and "hunter2" not in first["breaks"].detail and first == second


# ------------------------------------------------------------------ a standalone media node over HTTPS


async def signaling_answer(url: str, context: Any) -> str:
    async with aiohttp.ClientSession() as http, http.ws_connect(url, ssl=context) as ws:
        await ws.send_json({"type": "join", "token": "not-a-token"})
        answer: dict[str, str] = await ws.receive_json(timeout=10)
    return answer["code"]


@pytest.mark.slow
def test_a_media_node_over_https_makes_the_api_ready(tmp_path: Path) -> None:
    cert = make_certificate(tmp_path / "tls")
    shared = {"OPENVISIT_MEDIA_SECRET": secrets.token_urlsafe(32), "OPENVISIT_MEDIA_HEARTBEAT_SECONDS": "0.5"}
    with Served(tmp_path / "api", env={**shared, "OPENVISIT_EMBEDDED_MEDIA": "false"}) as api:
        body = wait_until(f"{api.url}/readyz", 503)
        assert body["missing"] == ["media"] and "openvisit sfu" in body["checks"]["media"]["detail"]
        with Served(tmp_path / "node", "--control-url", api.url, "--tls-cert", str(cert.cert), "--tls-key",
                    str(cert.key), command="sfu", env=shared, tls=True, name="sfu") as node:
            assert f"signaling at wss://127.0.0.1:{node.port}/v1/signaling" in node.output()
            verified = client_context(cert)
            ready = wait_until(f"{node.url}/readyz", 200, verified)
            assert set(ready["checks"]) == {"media", "recordings"}
            assert probe(f"{node.url}/livez", verified) == (200, {"status": "ok"})
            assert asyncio.run(signaling_answer(f"wss://127.0.0.1:{node.port}/v1/signaling", verified)) == "bad-token"
            body = wait_until(f"{api.url}/readyz", 200)
            assert "1 media node(s) with a live lease" in body["checks"]["media"]["detail"]
