"""The test clock moves only outside production, only forward, only for the operator."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_api.app import create_app
from control_api.auth import Principal, Role
from control_api.context import CONTEXT
from openvisit.clock import Clock, ClockLockedError
from openvisit.settings import Mode, Settings
from tests.support import Api


async def test_operator_moves_the_clock_forward_and_it_persists(api: Api) -> None:
    op = await api.operator()
    visitor = await api.sign_up()
    (await visitor.post("/v1/test-clock/advance", {"seconds": 60})).problem(403)
    (await op.post("/v1/test-clock/advance", {"seconds": -5})).problem(422)
    before = (await op.get("/v1/test-clock")).ok()
    after = await api.advance(op, 3600)  # moves the clock, then renews tokens it expired
    assert after["offset_seconds"] == before["offset_seconds"] + 3600
    swept = (await op.post("/v1/test-clock/sweep")).ok()
    assert set(swept["sweeps"]) == {"expire_credits", "close_finished_visits", "lapse_unreviewed_bookings",
                                    "delete_expired_recordings"}


async def test_production_clock_cannot_move(tmp_path: Path, sqlite_template: Path) -> None:
    db = tmp_path / "prod.sqlite3"
    shutil.copyfile(sqlite_template, db)
    settings = Settings(mode=Mode.PRODUCTION, data_dir=tmp_path / "data", database_url=f"sqlite:///{db}")
    app = create_app(settings, run_sweeper=False)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        ctx = app[CONTEXT]
        token = ctx.access_tokens.issue(Principal("op", Role.OPERATOR), ctx.clock.now())[0]
        resp = await client.post("/v1/test-clock/advance", json={"seconds": 60},
                                 headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 409 and (await resp.json())["type"].endswith("/clock-locked")
        assert ctx.clock.offset.total_seconds() == 0
    finally:
        await client.close()
    with pytest.raises(ClockLockedError):
        Clock(movable=False).set_offset(timedelta(seconds=1))


async def test_moving_the_clock_signs_nobody_out(api: Api) -> None:
    """Issue 13: a sign-in still open when the clock moves 30 days (longer than session_days)
    stays open: its expiry moves with the clock; the access token expires by the moved clock and
    the refresh token renews it. A session signed out before the move stays signed out."""
    from tests.support import PASSWORD, As

    op = await api.operator()
    visitor = await api.sign_up()
    email = visitor.extra["email"]
    login = (await api.anonymous.post("/v1/auth/login", {"email": email, "password": PASSWORD})).ok()
    ended = (await api.anonymous.post("/v1/auth/login", {"email": email, "password": PASSWORD})).ok()
    (await As(api, ended["access_token"]).post("/v1/auth/logout")).ok()
    session_end = datetime.fromisoformat(login["session_expires_at"])
    assert api.ctx.settings.session_days < 30

    # Straight through the route (Api.advance would renew the callers' sessions itself).
    moved = (await op.post("/v1/test-clock/advance", {"seconds": 30 * 24 * 3600})).ok()
    assert moved["offset_seconds"] >= 30 * 24 * 3600

    (await As(api, login["access_token"]).get("/v1/me")).problem(401)  # the short-lived token expired
    renewed = (await api.anonymous.post("/v1/auth/refresh", {"refresh_token": login["refresh_token"]})).ok()
    assert datetime.fromisoformat(renewed["session_expires_at"]) > session_end + timedelta(days=29)
    me = (await As(api, renewed["access_token"]).get("/v1/me")).ok()
    assert me["email"] == email
    (await api.anonymous.post("/v1/auth/refresh", {"refresh_token": ended["refresh_token"]})).problem(401)
