"""TURN credentials (issue 14): the TURN REST API scheme coturn's `use-auth-secret` checks, minted
per participant and expiring with the join window (S1, S2), and handed out with every join
token (a participant's join, a kiosk's join, an officer's monitor grant) next to the static ICE
servers. The relay itself accepting them is tested for real in tests/test_turn_relay.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control_api.domain.turn_credentials import accepts, mint, turn_password, turn_username
from control_api.services.ice_servers import ice_servers_for
from openvisit.settings import IceServer, Mode, Settings, SettingsError, load_settings
from tests.support import Api
from tests.support_facility import build_facility
from tests.test_monitoring import live

SECRET = "north-wing-secret"
TURN_URLS = ["turn:turn.example.org:3478?transport=udp", "turn:turn.example.org:3478?transport=tcp",
             "turns:turn.example.org:443?transport=tcp"]
STUN = IceServer(urls=["stun:stun.example.org:3478"])


def test_known_answer_matches_openssl() -> None:
    """`printf '1700000000:visitor-42' | openssl dgst -sha1 -hmac north-wing-secret -binary | base64`."""
    assert turn_password(SECRET, "1700000000:visitor-42") == "tzdQuoVm+z47/viC97xB6z68sPg="


def test_username_is_expiry_then_participant() -> None:
    expires = datetime(2023, 11, 14, 22, 13, 20, 900_000, tzinfo=UTC)
    credential = mint(SECRET, "visitor-42", expires)
    assert credential.username == "1700000000:visitor-42"
    assert credential.credential == "tzdQuoVm+z47/viC97xB6z68sPg="
    assert credential.expires_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize("participant", ["", "a:b"])
def test_participant_ids_that_would_break_the_username_are_refused(participant: str) -> None:
    with pytest.raises(ValueError):
        turn_username(datetime.now(UTC), participant)


def test_naive_times_and_empty_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        turn_username(datetime(2030, 1, 1), "p")
    with pytest.raises(ValueError, match="secret"):
        turn_password("", "1:p")


def test_the_relay_accepts_until_expiry_and_only_with_the_secret() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    c = mint(SECRET, "visitor-42", now + timedelta(minutes=40))
    assert accepts(SECRET, c.username, c.credential, now)
    assert accepts(SECRET, c.username, c.credential, now + timedelta(minutes=40))
    assert not accepts(SECRET, c.username, c.credential, now + timedelta(minutes=40, seconds=1))
    assert not accepts("another-secret", c.username, c.credential, now)
    forged = c.username.replace("visitor-42", "visitor-43")
    assert not accepts(SECRET, forged, c.credential, now)
    longer = f"{int((now + timedelta(days=30)).timestamp())}:visitor-42"  # a participant stretching its window
    assert not accepts(SECRET, longer, c.credential, now)
    assert not accepts(SECRET, "visitor-42", c.credential, now)


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(mode=Mode.TEST, data_dir=tmp_path, ice_servers=[STUN], **extra)


def test_static_servers_alone_without_turn_settings(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    servers = ice_servers_for(_settings(tmp_path), participant_id="p", valid_until=now + timedelta(hours=1), now=now)
    assert servers == [STUN]


def test_turn_credentials_last_the_window_plus_the_margin_on_the_relays_clock(tmp_path: Path) -> None:
    """The control plane's clock may have been moved (test/demo clock); the relay's has not: the
    time left in the window is what carries over."""
    settings = _settings(tmp_path, turn_urls=TURN_URLS, turn_secret=SECRET, turn_credential_margin_seconds=120)
    moved_now = datetime.now(UTC) + timedelta(days=3)
    before = datetime.now(UTC)
    stun, turn = ice_servers_for(settings, participant_id="visitor-42", valid_until=moved_now + timedelta(minutes=30),
                                 now=moved_now)
    assert stun == STUN
    assert turn.urls == TURN_URLS
    assert turn.username is not None and turn.credential is not None
    expiry, participant = turn.username.split(":")
    assert participant == "visitor-42"
    expected = before + timedelta(minutes=30, seconds=120)
    assert expected.timestamp() - 2 <= int(expiry) <= expected.timestamp() + 2
    assert accepts(SECRET, turn.username, turn.credential, before + timedelta(minutes=31))
    assert not accepts(SECRET, turn.username, turn.credential, before + timedelta(minutes=33))
    # A window already over: the credential still lives for the margin only.
    _, late = ice_servers_for(settings, participant_id="p", valid_until=moved_now - timedelta(minutes=5),
                              now=moved_now)
    assert late.username is not None
    assert int(late.username.split(":")[0]) <= datetime.now(UTC).timestamp() + 121


def test_turn_settings_are_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENVISIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("OPENVISIT_TURN_URLS", '["turn:turn.example.org:3478?transport=udp"]')
    with pytest.raises(SettingsError, match="turn_secret"):
        load_settings()
    monkeypatch.setenv("OPENVISIT_TURN_SECRET", SECRET)
    assert load_settings().turn_urls == ["turn:turn.example.org:3478?transport=udp"]
    monkeypatch.setenv("OPENVISIT_TURN_URLS", '["https://turn.example.org"]')
    with pytest.raises(SettingsError, match="turn_urls"):
        load_settings()
    monkeypatch.delenv("OPENVISIT_TURN_URLS")
    monkeypatch.setenv("OPENVISIT_MEDIA_ANNOUNCED_ADDRESS", "media.example.org")
    with pytest.raises(SettingsError, match="media_announced_address"):
        load_settings()
    monkeypatch.setenv("OPENVISIT_MEDIA_ANNOUNCED_ADDRESS", "203.0.113.7")
    assert load_settings().media_announced_address == "203.0.113.7"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """The suite's settings with a STUN server and a TURN relay configured."""
    return Settings(mode=Mode.TEST, data_dir=tmp_path / "data", database_url=database_url, ice_servers=[STUN],
                    turn_urls=TURN_URLS, turn_secret=SECRET)


def _turn_of(grant: dict[str, Any]) -> tuple[str, str]:
    servers = grant["ice_servers"]
    assert servers[0] == {"urls": STUN.urls, "username": None, "credential": None}
    [turn] = [s for s in servers if s["urls"] == TURN_URLS]
    return turn["username"], turn["credential"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_every_join_token_comes_with_a_relay_credential_for_its_holder(api: Api) -> None:
    """The visitor's join, the kiosk's join (for the resident) and the officer's monitor grant each
    carry the static servers and a TURN credential naming that participant, valid until the
    visit's end plus the margin (S1, S2) and no longer."""
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    ends_at = datetime.fromisoformat(visit["ends_at"])
    left = ends_at - api.ctx.clock.now()
    grants = {
        str(visitor.principal_id): (await visitor.post(f"/v1/visits/{visit['id']}/join")).ok(),
        w.resident_id: (await w.kiosk.post(f"/v1/visits/{visit['id']}/join")).ok(),
        str(w.officer.principal_id): (await w.officer.post(f"/v1/visits/{visit['id']}/monitor")).ok(),
    }
    wall_now = datetime.now(UTC)
    for participant, grant in grants.items():
        username, credential = _turn_of(grant)
        expiry, named = username.split(":")
        assert named == participant
        expected = (wall_now + left + timedelta(seconds=api.ctx.settings.turn_credential_margin_seconds)).timestamp()
        assert expected - 5 <= int(expiry) <= expected + 1
        assert accepts(SECRET, username, credential, wall_now)
        assert not accepts(SECRET, username, credential, datetime.fromtimestamp(int(expiry) + 1, UTC))
    assert len({_turn_of(g)[0] for g in grants.values()}) == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_device_check_gets_a_relay_credential_too(api: Api) -> None:
    """The connection test must take the path the visit will take: through the relay where UDP
    is blocked, so its grant carries a TURN credential for the checker, short-lived like the check."""
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    grant = (await visitor.post("/v1/device-checks")).ok(201)
    username, credential = _turn_of(grant)
    expiry, named = username.split(":")
    assert named == f"check-{visitor.principal_id}"
    assert accepts(SECRET, username, credential, datetime.now(UTC))
    lasts = int(expiry) - datetime.now(UTC).timestamp()
    assert 0 < lasts <= grant["max_seconds"] + 60 + api.ctx.settings.turn_credential_margin_seconds
