"""Behind a reverse proxy (issue 14): forwarded headers are believed only from `trusted_proxies`.

The real server runs with `trusted_proxies = ["127.0.0.1"]`; the test is the proxy when it
connects from 127.0.0.1, and an outsider when it connects from 127.0.0.2 (also this machine's
loopback, but not trusted). An outsider who claims a new address per request in
`X-Forwarded-For` or `Forwarded` must not escape the per-address sign-in throttle, must not get
a forged address into the sessions list or the audit log, and must not claim https.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from sqlalchemy import select

from control_api.db.models import AuditEntry
from control_api.demo import DEMO_PASSWORD
from control_api.domain.login_throttle import SOURCE_POLICY
from openvisit.forwarded import TrustedProxies
from openvisit.settings import Mode, Settings
from tests.support import Api
from tests.support_serve import Served
from tests.support_visits import seed_visit, seed_world
from tests.test_refused_attempts import _forged

PROXY, OUTSIDER = "127.0.0.1", "127.0.0.2"


# ------------------------------------------------------------------ the rule, pure


def headers(**values: str) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict({k.replace("_", "-"): v for k, v in values.items()}))


TRUSTED = TrustedProxies(["10.0.0.0/8", "127.0.0.1", "2001:db8::/32"])


@pytest.mark.parametrize(("peer", "sent", "expected"), [
    # an untrusted peer: its headers are ignored, whatever they say
    ("198.51.100.9", headers(X_Forwarded_For="1.2.3.4", X_Forwarded_Proto="https"), ("198.51.100.9", None)),
    ("198.51.100.9", headers(Forwarded="for=1.2.3.4;proto=https"), ("198.51.100.9", None)),
    # one trusted proxy
    ("127.0.0.1", headers(X_Forwarded_For="203.0.113.7", X_Forwarded_Proto="https"), ("203.0.113.7", "https")),
    ("127.0.0.1", headers(Forwarded='for="[2001:db9::5]:4711";proto=https'), ("2001:db9::5", "https")),
    ("127.0.0.1", headers(Forwarded="for=203.0.113.7:5000"), ("203.0.113.7", None)),
    # the client prepends a lie; the right-most untrusted address is the client
    ("127.0.0.1", headers(X_Forwarded_For="6.6.6.6, 203.0.113.7"), ("203.0.113.7", None)),
    ("127.0.0.1", headers(X_Forwarded_For="6.6.6.6, 203.0.113.7, 10.1.2.3"), ("203.0.113.7", None)),
    ("127.0.0.1", headers(Forwarded="for=6.6.6.6, for=203.0.113.7;proto=https, for=10.1.2.3;proto=http"),
     ("203.0.113.7", "https")),
    # only proxies in the chain: the left-most one is the best we know
    ("127.0.0.1", headers(X_Forwarded_For="10.9.9.9, 10.1.2.3"), ("10.9.9.9", None)),
    # garbage where the client belongs: the proxy that wrote it stands for the client
    ("127.0.0.1", headers(X_Forwarded_For="not-an-address, 10.1.2.3"), ("10.1.2.3", None)),
    ("127.0.0.1", headers(Forwarded="for=unknown"), ("127.0.0.1", None)),
    # nothing forwarded, or only the scheme
    ("127.0.0.1", headers(), ("127.0.0.1", None)),
    ("127.0.0.1", headers(X_Forwarded_Proto="https"), ("127.0.0.1", "https")),
    ("127.0.0.1", headers(X_Forwarded_Proto="gopher"), ("127.0.0.1", None)),
    ("::ffff:127.0.0.1", headers(X_Forwarded_For="203.0.113.7"), ("203.0.113.7", None)),
])
def test_forwarded_headers_are_read_from_the_right_and_only_from_trusted_peers(
        peer: str, sent: CIMultiDictProxy[str], expected: tuple[str, str | None]) -> None:
    assert TRUSTED.resolve(peer, sent) == expected


def test_trusted_proxies_setting_is_checked_at_start() -> None:
    assert Settings(trusted_proxies=[" 10.0.0.0/8", "::1"]).trusted_proxies == ["10.0.0.0/8", "::1"]
    with pytest.raises(ValueError, match="not an IP address or CIDR network"):
        Settings(trusted_proxies=["proxy.example.org"])


# ------------------------------------------------------------------ a real server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("proxies")
    with Served(root, "--demo", env={"OPENVISIT_TRUSTED_PROXIES": f'["{PROXY}"]'}) as server:
        yield server


def client(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0), force_close=True))


async def fail_sign_in(http: aiohttp.ClientSession, server: Served, n: int, **sent: str) -> int:
    async with http.post(f"{server.url}/v1/auth/login", headers=sent,
                         json={"email": f"nobody{n}@example.org", "password": "wrong-password"}) as resp:
        return resp.status


async def sign_in(http: aiohttp.ClientSession, server: Served, **sent: str) -> tuple[str, dict[str, str]]:
    async with http.post(f"{server.url}/v1/auth/login", headers=sent,
                         json={"email": "visitor@demo.openvisit.org", "password": DEMO_PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["access_token"], dict(resp.headers)


async def current_session(http: aiohttp.ClientSession, server: Served, token: str) -> dict[str, Any]:
    async with http.get(f"{server.url}/v1/me/sessions", headers={"Authorization": f"Bearer {token}"}) as resp:
        sessions: list[dict[str, Any]] = await resp.json()
    return next(s for s in sessions if s["current"])


@pytest.mark.slow
async def test_the_proxy_names_the_client_and_the_scheme(served: Served) -> None:
    async with client(PROXY) as http:
        token, answered = await sign_in(http, served, **{"X-Forwarded-For": "6.6.6.6, 198.51.100.77",
                                                         "X-Forwarded-Proto": "https"})
        assert answered["Strict-Transport-Security"].startswith("max-age=")
        assert (await current_session(http, served, token))["source_address"] == "198.51.100.77"
        # Each client behind the proxy is throttled on its own: many failing clients block nobody else.
        statuses = [await fail_sign_in(http, served, n, **{"X-Forwarded-For": f"198.51.100.{n}"})
                    for n in range(SOURCE_POLICY.free_failures + 1)]
        assert set(statuses) == {401}, statuses


@pytest.mark.slow
async def test_an_outsider_cannot_claim_another_address_or_https(served: Served) -> None:
    async with client(OUTSIDER) as http:
        token, answered = await sign_in(http, served, **{"X-Forwarded-For": "198.51.100.88",
                                                         "Forwarded": "for=198.51.100.89;proto=https",
                                                         "X-Forwarded-Proto": "https"})
        assert "Strict-Transport-Security" not in answered  # plain http on loopback, whatever it claims
        assert (await current_session(http, served, token))["source_address"] == OUTSIDER
        # A new made-up address per attempt does not escape the per-address throttle.
        statuses = []
        for n in range(SOURCE_POLICY.free_failures + 2):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}", "Forwarded": f"for=203.0.113.{n}"}
            statuses.append(await fail_sign_in(http, served, 1000 + n, **spoofed))
        assert statuses[:SOURCE_POLICY.free_failures] == [401] * SOURCE_POLICY.free_failures
        assert statuses[SOURCE_POLICY.free_failures:] == [429, 429], statuses
    async with client(PROXY) as http:  # the proxy's own clients are not caught by the outsider's block
        assert await fail_sign_in(http, served, 2000, **{"X-Forwarded-For": "198.51.100.200"}) == 401


# ------------------------------------------------------------------ in process: the audit log and signaling URL

pytestmark_sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(mode=Mode.TEST, data_dir=tmp_path / "data", database_url=database_url,
                    trusted_proxies=[PROXY], media_addresses=["127.0.0.1"])


@pytestmark_sqlite
async def test_signaling_url_is_wss_when_the_proxy_says_https(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-1))
    plain = (await w.visitor.post(f"/v1/visits/{v['id']}/join", {})).ok()
    assert plain["signaling_url"].startswith("ws://")
    secure = (await w.visitor.request("POST", f"/v1/visits/{v['id']}/join", json={},
                                      headers={"X-Forwarded-Proto": "https",
                                               "X-Forwarded-For": "198.51.100.5"})).ok()
    assert secure["signaling_url"].startswith("wss://") and secure["signaling_url"].endswith("/v1/signaling")


@pytestmark_sqlite
async def test_refused_join_is_audited_with_the_forwarded_address(api: Api) -> None:
    """Issue 12's refused-attempt audit names the client behind the proxy, not the proxy."""
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-1))
    url = str(api.client.make_url("/v1/signaling"))
    async with aiohttp.ClientSession() as http, http.ws_connect(
            url, headers={"X-Forwarded-For": "203.0.113.44"}) as ws:
        await ws.send_json({"type": "join", "token": _forged(v["id"], "probe-intruder")})
        assert (await ws.receive_json(timeout=5))["code"] == "bad-token"
    for _ in range(100):
        async with api.ctx.sessions() as session:
            rows = (await session.scalars(select(AuditEntry).where(
                AuditEntry.visit_id == v["id"], AuditEntry.action == "media.join_refused"))).all()
        if rows:
            break
        await asyncio.sleep(0.1)
    assert rows, "the refused attempt was not audited"
    assert rows[0].detail["client_address"] == "203.0.113.44"
