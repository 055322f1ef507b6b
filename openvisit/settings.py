"""One typed settings object for every openvisit process.

Values come, in rising priority, from defaults, a TOML file (``OPENVISIT_CONFIG`` or
``--config``) and ``OPENVISIT_*`` environment variables. They are validated once at start so a
bad value stops the process with a message naming the setting, instead of failing later.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Mode(StrEnum):
    """`production` disables everything that bends reality (the test clock, demo data)."""

    PRODUCTION = "production"
    DEMO = "demo"
    TEST = "test"


class IceServer(BaseModel):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "openvisit"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPENVISIT_", extra="forbid")

    mode: Mode = Mode.PRODUCTION
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default is an SQLite file in data_dir"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="Base URL users reach the API at")
    signaling_url: str | None = Field(default=None, description="WebSocket URL of the signaling service")
    ice_servers: list[IceServer] = Field(default_factory=list)
    embedded_media: bool = Field(default=True, description="run the SFU and signaling inside `openvisit serve`")
    media_addresses: list[str] = Field(
        default_factory=list, description="addresses the SFU gathers and announces ICE candidates on (all if empty)")
    media_udp_ports: str | None = Field(
        default=None, pattern=r"^\d{1,5}-\d{1,5}$",
        description="UDP port range the SFU binds its ICE sockets in, e.g. 40000-40999 (ephemeral if unset)")
    media_timeout_seconds: float = Field(
        default=30.0, gt=0, description="both parties connected after the start, no media this long: the visit failed")
    media_stall_seconds: float = Field(
        default=4.0, gt=0, le=60, description="a party whose media stops this long is dropped and may rejoin (S5)")
    media_heartbeat_seconds: float = Field(
        default=2.0, gt=0, le=60, description="how often a media node renews its lease and reports its sessions")
    media_lease_seconds: float = Field(
        default=6.0, gt=0, le=300,
        description="a media node silent this long is gone: its visits are interrupted (rejoinable, S5)")

    media_outbox_path: Path | None = Field(
        default=None, description="the media plane's outbox file (visit events on their way to the control API; "
        "its state store sits next to it). Default: data_dir/media-outbox-embedded.sqlite3 inside `openvisit "
        "serve`, data_dir/media-outbox-node.sqlite3 for `openvisit sfu`, so both can share a data_dir")
    recordings_min_free_mb: int = Field(
        default=256, ge=0, description="a media node starts no new recording with less free space than this in "
                                       "the recordings folder (reported as recording_failed, shown on /v1/health)")

    # --- TURN relay and the SFU's announced address (issue 14; control_api/domain/turn_credentials.py) ---
    media_announced_address: str | None = Field(
        default=None, description="the public IP the SFU puts in its ICE candidates instead of the address it "
        "binds (media_addresses), when it sits behind a 1:1 NAT (e.g. a cloud machine's elastic IP)")
    turn_urls: list[str] = Field(
        default_factory=list, description="TURN URLs offered to participants with per-participant credentials, "
        "e.g. turn:turn.example.org:3478?transport=udp, turn:turn.example.org:3478?transport=tcp, "
        "turns:turn.example.org:443?transport=tcp (needs turn_secret)")
    turn_secret: str | None = Field(
        default=None, description="the relay's static-auth-secret (coturn use-auth-secret): TURN credentials are "
                                  "HMACs of it, minted per participant")
    turn_credential_margin_seconds: int = Field(
        default=300, ge=0, le=3600, description="TURN credentials outlive the participant's join window (S1, S2) "
                                                "by this much")

    @field_validator("turn_urls")
    @classmethod
    def _turn_url_shape(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.fullmatch(r"turns?:[A-Za-z0-9.\-\[\]:]+?(:\d{1,5})?(\?transport=(udp|tcp))?", url.strip()):
                raise ValueError(f"{url!r} is not a TURN URL (turn:HOST:PORT?transport=udp|tcp, "
                                 "turns:HOST:443?transport=tcp)")
        return [url.strip() for url in value]

    @field_validator("media_announced_address")
    @classmethod
    def _announced_ip(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ipaddress.ip_address(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address (ICE candidates carry addresses, not names)") \
                    from None
            return value.strip()
        return value

    @model_validator(mode="after")
    def _turn_needs_secret(self) -> Settings:
        if self.turn_urls and not self.turn_secret:
            raise ValueError("turn_urls need turn_secret (the relay's static-auth-secret) to mint credentials")
        return self
    # --- end of issue 14 TURN block ---

    access_token_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description="access tokens live this long; pages renew them with the session's refresh token")
    join_token_seconds: int = Field(default=120, ge=10, le=3600)
    lobby_minutes: int = Field(default=10, ge=0, le=60, description="rule S1: join opens this early")
    credit_expiry_days: int = Field(default=90, ge=1, le=3650, description="rule M5")
    credit_request_decision_hours: int = Field(default=72, ge=1, le=24 * 30, description="rule M6")
    photo_id_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)

    session_days: int = Field(default=14, ge=1, le=90,
                              description="a sign-in lasts this long without use (refreshing renews it)")
    staff_second_factor: bool | None = Field(
        default=None, description="staff (admins, officers, investigators) must sign in with a TOTP code; "
                                  "default: on in production mode")
    smtp_host: str | None = Field(
        default=None, description="mail server for account mail; unset: mail waits in the outbox "
                                  "(readable at /v1/demo/mail outside production)")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls (port 587), tls (implicit, port 465) or none (a local relay)")
    mail_from: str = Field(default="openvisit <no-reply@openvisit.invalid>", description="the From: of account mail")

    # --- HTTPS, reverse proxies, readiness (issue 14; openvisit/tls.py, forwarded.py, health.py) ---
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate chain: serve HTTPS/WSS (with tls_key_file); a renewed file is "
                                  "picked up without a restart")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    tls_reload_seconds: float = Field(
        default=30.0, gt=0, le=24 * 3600, description="how often the certificate files are checked for a renewal "
                                                      "(SIGHUP checks at once)")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="addresses or CIDR networks of reverse proxies whose X-Forwarded-For, "
        "X-Forwarded-Proto and Forwarded headers are believed (client address, https); nobody else's are")
    readiness_cache_seconds: float = Field(
        default=1.5, ge=0, le=60, description="/readyz reuses a database check this recent")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network (10.0.0.5, 10.0.0.0/24)") from None
        return [item.strip() for item in value]

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: give both (HTTPS) or neither (HTTP)")
        return self

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None and self.tls_key_file is not None
    # --- end of issue 14 HTTPS block ---

    jwt_secret: str | None = Field(default=None, description="HS256 key for access tokens; generated if unset")
    media_secret: str | None = Field(
        default=None, description="Bearer secret media nodes use to report visit events; generated if unset"
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
            return "sqlite+aiosqlite://" + value.split("://", 1)[1]
        if not (value.startswith("postgresql+asyncpg://") or value.startswith("sqlite+aiosqlite://")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return value

    @field_validator("media_udp_ports")
    @classmethod
    def _port_range(cls, value: str | None) -> str | None:
        if value is not None:
            first, last = (int(x) for x in value.split("-"))
            if not 1 <= first <= last <= 65535:
                raise ValueError("must be FIRST-LAST with 1 <= FIRST <= LAST <= 65535")
        return value

    @property
    def udp_port_range(self) -> tuple[int, int] | None:
        if self.media_udp_ports is None:
            return None
        first, last = (int(x) for x in self.media_udp_ports.split("-"))
        return first, last

    @property
    def second_factor_required_for_staff(self) -> bool:
        return self.mode is Mode.PRODUCTION if self.staff_second_factor is None else self.staff_second_factor

    @property
    def test_clock_enabled(self) -> bool:
        """The movable clock exists only outside production (issue: test clock)."""
        return self.mode is not Mode.PRODUCTION

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'openvisit.sqlite3'}"

    @property
    def uploads_dir(self) -> Path:
        """Private uploads (photo IDs): inside data_dir, never under a served static root."""
        return self.data_dir / "uploads"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def media_outbox_file(self, plane: Literal["embedded", "node"]) -> Path:
        """Where this media plane's outbox lives (sfu/outbox.py); each process needs its own."""
        return self.media_outbox_path or self.data_dir / f"media-outbox-{plane}.sqlite3"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"


class SettingsError(Exception):
    """Raised with one readable line per bad setting."""


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Build settings from file + environment + explicit overrides (CLI flags win)."""
    file_values: dict[str, Any] = {}
    path = config_file or os.environ.get("OPENVISIT_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                file_values = tomllib.load(fh)
        except OSError as exc:
            raise SettingsError(f"config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: {exc}") from exc
    env_keys = {k[len("OPENVISIT_") :].lower() for k in os.environ if k.startswith("OPENVISIT_")}
    values = {k: v for k, v in file_values.items() if k not in env_keys}
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"setting {name!r}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
