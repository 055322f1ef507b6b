"""The `openvisit` command: settings validation, migrate, demo seeding, serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from openvisit.settings import SettingsError, load_settings
from tests.support import Api, As


def run_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OPENVISIT_DATA_DIR": str(data_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "openvisit.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False)


def test_bad_settings_stop_with_a_clear_message(tmp_path: Path) -> None:
    result = run_cli("migrate", data_dir=tmp_path, env={"OPENVISIT_PORT": "99999"})
    assert result.returncode == 2
    assert "setting 'port'" in result.stderr


def test_config_file_and_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "openvisit.toml"
    cfg.write_text('port = 9000\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("OPENVISIT_PORT", "9100")
    settings = load_settings(cfg)
    assert settings.port == 9100 and settings.host == "0.0.0.0"
    cfg.write_text("credit_expiry_days = 0\n")
    with pytest.raises(SettingsError, match="credit_expiry_days"):
        load_settings(cfg)


def test_migrate_and_demo_are_idempotent(tmp_path: Path) -> None:
    assert run_cli("migrate", data_dir=tmp_path).returncode == 0
    first = run_cli("demo", data_dir=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "visitor@demo.openvisit.org" in first.stdout
    second = run_cli("demo", data_dir=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "openvisit.sqlite3").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_demo_prints_url_and_answers(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "OPENVISIT_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "openvisit.cli", "serve", "--demo", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        seen = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen += line
            if "openvisit is running at" in line:
                break
        assert f"http://127.0.0.1:{port}/" in seen, seen
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=10) as resp:
            assert b'"openapi"' in resp.read()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert proc.returncode == 0


async def test_demo_accounts_can_book_with_the_test_card(api: Api) -> None:
    """What a newcomer does after `bash scripts/start.sh`: sign in as the demo visitor and book."""
    from datetime import timedelta

    from control_api.demo import DEMO_PASSWORD, seed_demo

    accounts = await seed_demo(api.ctx.settings)
    login = (await api.anonymous.post("/v1/auth/login", {"email": accounts["visitor"],
                                                         "password": DEMO_PASSWORD})).ok()
    visitor = As(api, login["access_token"])
    facility = (await visitor.get("/v1/facilities")).ok()[0]
    resident = (await visitor.get(f"/v1/facilities/{facility['id']}/residents/lookup?booking_number=D-1001")).ok()
    day = (api.ctx.clock.now() + timedelta(days=2)).date()
    slots = (await visitor.get(f"/v1/residents/{resident['id']}/availability?from={day}&to={day}"
                               "&length_minutes=30")).ok()["slots"]
    assert slots
    visit = (await visitor.post("/v1/visits", {"resident_id": resident["id"], "starts_at": slots[0]["starts_at"],
                                               "length_minutes": 30, "payment": {"card_token": "tok_visa"}},
                                idempotency_key=True)).ok(201)
    assert visit["status"] == "scheduled" and visit["card_charged_cents"] == 750


def test_udp_port_range_setting() -> None:
    from openvisit.settings import Settings

    assert Settings(media_udp_ports="40000-40999").udp_port_range == (40000, 40999)
    assert Settings().udp_port_range is None
    for bad in ("40999-40000", "0-10", "1-70000", "40000", "a-b"):
        with pytest.raises(ValueError):
            Settings(media_udp_ports=bad)


def test_database_urls_select_the_async_drivers() -> None:
    from openvisit.settings import Settings

    assert Settings(database_url="postgresql://u@db/x").database_url == "postgresql+asyncpg://u@db/x"
    assert Settings(database_url="sqlite:////tmp/x.db").database_url == "sqlite+aiosqlite:////tmp/x.db"
    with pytest.raises(ValueError, match="postgresql:// or sqlite://"):
        Settings(database_url="mysql://u@db/x")


def test_serve_on_a_port_in_use_says_so_in_one_line(tmp_path: Path) -> None:
    """Issue 13: a port already in use is one clear line (where, what to do) and a non-zero exit,
    not a traceback; nothing is migrated before the check."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        result = run_cli("serve", "--demo", "--port", str(port), data_dir=tmp_path)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "already in use" in lines[0], lines[0]
    assert "--port" in lines[0]
    assert not (tmp_path / "openvisit.sqlite3").exists()


def test_startup_message_names_every_page() -> None:
    from openvisit.cli import startup_message

    message = startup_message("http://127.0.0.1:8080")
    assert message.splitlines()[0] == "openvisit is running at http://127.0.0.1:8080/"
    for page in ("/app/", "/app/visits.html", "/app/book.html", "/app/facilities.html", "/app/billing.html",
                 "/app/account.html", "/app/signup.html", "/app/check.html", "/app/admin.html", "/app/operator.html",
                 "/app/officer.html", "/app/review.html", "/app/kiosk.html", "/v1/docs"):
        assert f"http://127.0.0.1:8080{page}\n" in message + "\n", page
