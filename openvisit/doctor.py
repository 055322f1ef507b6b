"""`openvisit doctor`: checks a configuration before go-live and says what to fix (issue 14).

A facility should learn that its certificate expired, its relay refuses the credentials the API
mints or its schema is behind before a family's visit fails, not at visit time. Each check is a
named function that looks at one thing, from the machine the command runs on, the way the
running system will: it loads the TLS files, asks the database for its schema version and its
clock, writes into the recordings folder, binds the media addresses and ports, allocates a relay
address on every TURN URL with freshly minted credentials and asks the relay (as a STUN server)
which address the media node is seen from. Nothing is changed (no migration, no key, no mail),
except that the recordings folder is created if missing, as the server would at start.

Each finding is `ok`, `warn` (works, but a visitor or an operator will be hurt sooner or later) or
`fail` (visits will not work); the command exits 1 when anything fails.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from openvisit.settings import Mode, Settings
from openvisit.turn_probe import allocate, turn_server

Level = Literal["ok", "warn", "fail"]
TURN_TIMEOUT = 5.0
CERT_WARN_DAYS = 14
CLOCK_WARN_SECONDS = 2.0


@dataclass(frozen=True)
class Finding:
    check: str
    level: Level
    detail: str  # what was found
    fix: str = ""  # what to do about it (empty when nothing)

    def as_json(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "detail": self.detail, "fix": self.fix}


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, level: Level, detail: str, fix: str = "") -> None:
        self.findings.append(Finding(check, level, detail, fix))

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)

    def render(self) -> str:
        marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
        lines = []
        for f in self.findings:
            lines.append(f"{marks[f.level]} {f.check}: {f.detail}")
            if f.fix:
                lines.append(f"     fix: {f.fix}")
        counts = {level: sum(1 for f in self.findings if f.level == level) for level in ("ok", "warn", "fail")}
        verdict = "NOT ready for visits" if self.failed else "ready for visits"
        lines.append(f"{verdict}: {counts['ok']} ok, {counts['warn']} warnings, {counts['fail']} failures")
        return "\n".join(lines)


def _public_host(settings: Settings) -> str | None:
    return urlsplit(settings.public_url).hostname if settings.public_url else None


def _is_loopback(host: str | None) -> bool:
    if host in (None, "localhost"):
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def check_mode(settings: Settings, report: Report) -> None:
    if settings.mode is Mode.PRODUCTION:
        report.add("mode", "ok", "production: the clock is real, no demo accounts")
    else:
        report.add("mode", "warn", f"{settings.mode.value} mode: the test clock can move and demo data may exist",
                   "set mode = \"production\" (OPENVISIT_MODE=production) before real visits")
    if settings.mode is Mode.PRODUCTION and settings.staff_second_factor is False:
        report.add("staff sign-in", "warn", "staff sign in with a password alone (staff_second_factor = false)",
                   "remove staff_second_factor (on by default in production): staff watch visits and export "
                   "recordings")


def check_https(settings: Settings, report: Report, now: datetime) -> None:
    """Browsers give a page the camera and microphone only in a secure context: HTTPS, or localhost."""
    host = _public_host(settings)
    scheme = urlsplit(settings.public_url).scheme if settings.public_url else None
    if settings.public_url is None:
        report.add("public url", "warn", "public_url is not set: mailed links and the startup message use "
                   f"http://{settings.host}:{settings.port}", "set public_url to the https:// address families use")
    elif scheme != "https" and not _is_loopback(host):
        report.add("public url", "fail", f"{settings.public_url} is not https: browsers refuse the camera and "
                   "microphone to plain http pages", "serve HTTPS (tls_cert_file/tls_key_file) or put a TLS proxy in "
                   "front (docs/deploy.md) and set public_url to https://…")
    else:
        report.add("public url", "ok", settings.public_url)
    if settings.tls_enabled:
        _check_certificate(settings, report, now, host)
    elif settings.trusted_proxies:
        report.add("https", "ok", "TLS is terminated by a reverse proxy; forwarded headers are believed only from "
                   + ", ".join(settings.trusted_proxies))
    elif not _is_loopback(host) or not _is_loopback(settings.host):
        report.add("https", "fail" if settings.mode is Mode.PRODUCTION else "warn",
                   "neither a certificate (tls_cert_file) nor a reverse proxy (trusted_proxies) is configured",
                   "give tls_cert_file and tls_key_file, or run behind Caddy/nginx and list it in trusted_proxies")
    else:
        report.add("https", "ok", "loopback only: browsers treat localhost as secure")


def _check_certificate(settings: Settings, report: Report, now: datetime, host: str | None) -> None:
    from cryptography import x509

    assert settings.tls_cert_file is not None and settings.tls_key_file is not None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
        cert = x509.load_pem_x509_certificate(settings.tls_cert_file.read_bytes())
    except (OSError, ssl.SSLError, ValueError) as exc:
        report.add("certificate", "fail", f"the certificate or key cannot be used: {exc}",
                   "check the files' paths and permissions, and that the key belongs to the certificate")
        return
    expires = cert.not_valid_after_utc
    days = (expires - now).total_seconds() / 86400
    subject = cert.subject.rfc4514_string()
    if days < 0:
        report.add("certificate", "fail", f"{subject} expired on {expires:%Y-%m-%d}",
                   "renew it (certbot/ACME); openvisit picks up the renewed files without a restart")
    elif cert.not_valid_before_utc > now:
        report.add("certificate", "fail", f"{subject} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M}",
                   "check this machine's clock, or the certificate's dates")
    elif days < CERT_WARN_DAYS:
        report.add("certificate", "warn", f"{subject} expires in {days:.0f} days ({expires:%Y-%m-%d})",
                   "renew it now; check that automatic renewal runs")
    else:
        report.add("certificate", "ok", f"{subject}, valid for {days:.0f} more days (until {expires:%Y-%m-%d})")
    if host is not None and not _certificate_names(cert, host):
        report.add("certificate name", "fail", f"the certificate does not name {host} (public_url's host)",
                   "get a certificate for that name, or fix public_url")


def _certificate_names(cert: Any, host: str) -> bool:
    """True if the certificate's subject alternative names cover `host` (RFC 6125 wildcards)."""
    from cryptography import x509

    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
        return address in names.get_values_for_type(x509.IPAddress)
    except ValueError:
        pass
    for name in names.get_values_for_type(x509.DNSName):
        name = name.lower()
        if name == host.lower():
            return True
        if name.startswith("*.") and host.lower().partition(".")[2] == name[2:]:
            return True
    return False


async def check_database(settings: Settings, report: Report) -> None:
    from sqlalchemy import text

    from control_api.db.engine import make_engine
    from control_api.readiness import migration_heads

    url = settings.effective_database_url
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            server_now = None
            if engine.dialect.name == "postgresql":  # first: a failed query below aborts the transaction
                before = time.time()
                server_now = (await conn.execute(text("SELECT extract(epoch FROM clock_timestamp())"))).scalar()
                local = (before + time.time()) / 2
            try:
                versions = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
            except Exception:  # no such table: never migrated
                versions = set()
    except Exception as exc:
        fix = ("the SQLite file cannot be opened: run `openvisit migrate` (it creates it), or check data_dir"
               if url.startswith("sqlite") else
               "check that the database runs and database_url (user, password, host, database name)")
        report.add("database", "fail", f"cannot connect ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})", fix)
        return
    finally:
        await engine.dispose()
    heads = migration_heads()
    kind = engine.dialect.name
    if versions != heads:
        have = ", ".join(sorted(versions)) or "no schema"
        report.add("database", "fail", f"{kind} reachable, schema at {have}; this release needs "
                   f"{', '.join(sorted(heads))}", "run `openvisit migrate` (back up first: docs/deploy.md)")
    else:
        report.add("database", "ok", f"{kind} reachable, schema at {', '.join(sorted(heads))}")
    if kind == "sqlite" and settings.mode is Mode.PRODUCTION:
        report.add("database engine", "warn", "SQLite: one process on one machine, no standby",
                   "use PostgreSQL in production (database_url = postgresql+asyncpg://…)")
    if server_now is not None:
        offset = float(server_now) - local
        level: Level = "ok" if abs(offset) <= CLOCK_WARN_SECONDS else "warn"
        report.add("database clock", level, f"the database's clock is {offset:+.2f} s from this machine's",
                   "" if level == "ok" else "run NTP (chrony/systemd-timesyncd) on both machines: visits start "
                   "and end by the clock (S1, S2)")


def check_recordings(settings: Settings, report: Report) -> None:
    from openvisit.health import _probe_folder

    result = _probe_folder(settings.recordings_dir, settings.recordings_min_free_mb << 20)
    report.add("recordings folder", "ok" if result.ok else "fail", f"{settings.recordings_dir}: {result.detail}")
    keys = settings.keys_dir
    key_files = sorted(keys.glob("*.pem")) if keys.is_dir() else []
    if not key_files:
        report.add("signing key", "warn", f"no signing key in {keys} yet: it is made at the first start",
                   "start once, then back the key folder up with the database (docs/deploy.md, Backups): "
                   "recordings and exports are verified with it")
    else:
        loose = [p.name for p in key_files if p.stat().st_mode & 0o077]  # private keys: the owner's alone
        report.add("signing key", "warn" if loose else "ok",
                   f"{len(key_files)} key file(s) in {keys}" + (f"; readable by others: {', '.join(loose)}" if loose
                                                                 else ""),
                   "chmod 600 the key files" if loose else "")


def _port_range(settings: Settings) -> tuple[int, int] | None:
    if not settings.media_udp_ports:
        return None
    low, high = (int(p) for p in settings.media_udp_ports.split("-"))
    return low, high


def check_media(settings: Settings, report: Report) -> None:
    """The media node's addresses exist here and its UDP ports can be bound."""
    addresses = settings.media_addresses or ["0.0.0.0"]
    ports = _port_range(settings)
    if ports is not None and (ports[0] > ports[1] or ports[0] < 1024 or ports[1] > 65535):
        report.add("media ports", "fail", f"media_udp_ports {settings.media_udp_ports} is not a usable range",
                   "use a range like 40000-40999 above 1023")
        return
    sample = [0] if ports is None else sorted({ports[0], (ports[0] + ports[1]) // 2, ports[1]})
    for address in addresses:
        bound, problems = 0, []
        for port in sample:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                try:
                    sock.bind((address, port))
                    bound += 1
                except OSError as exc:
                    problems.append(f"{port}: {exc.strerror}")
        if bound == 0:
            report.add("media address", "fail", f"cannot bind UDP on {address} ({'; '.join(problems)})",
                       "media_addresses must be addresses of this machine, and the ports free")
        elif problems:
            report.add("media address", "warn", f"UDP on {address}: some ports are taken ({'; '.join(problems)})",
                       "keep media_udp_ports for openvisit alone")
        else:
            what = "ephemeral ports" if ports is None else f"ports {settings.media_udp_ports}"
            report.add("media address", "ok", f"UDP {what} bind on {address}")
    if ports is None:
        report.add("media ports", "warn", "media_udp_ports is not set: the media node uses random ports",
                   "set media_udp_ports (e.g. 40000-40999) and open that range for UDP in the firewall")
    announced = settings.media_announced_address
    private = [a for a in addresses if a != "0.0.0.0" and ipaddress.ip_address(a).is_private]
    if announced is None and private and not settings.turn_urls:
        report.add("media reachability", "warn", f"the media node announces private address(es) {', '.join(private)} "
                   "and no relay is configured: visitors outside this network cannot reach it",
                   "set media_announced_address to the public IP, and configure TURN")


async def check_turn(settings: Settings, report: Report, now: datetime) -> None:
    """Credentials minted as the API mints them must be accepted by the relay on every URL."""
    if not settings.turn_urls:
        report.add("turn", "warn", "no TURN relay: visitors behind symmetric NAT or on networks that block UDP "
                   "(many mobile and workplace networks) cannot connect",
                   "run coturn and set turn_urls and turn_secret (docs/deploy.md, TURN)")
        return
    from control_api.domain.turn_credentials import mint

    assert settings.turn_secret is not None
    credential = mint(settings.turn_secret, "openvisit-doctor", now + timedelta(minutes=5))
    for url in settings.turn_urls:
        try:
            async with asyncio.timeout(TURN_TIMEOUT):
                relayed = await allocate(url, credential.username, credential.credential)
        except TimeoutError:
            report.add("turn", "fail", f"{url}: no answer within {TURN_TIMEOUT:g} s",
                       "check that coturn runs, listens there, and the firewall lets this transport through")
        except ssl.SSLError as exc:
            report.add("turn", "fail", f"{url}: TLS failed ({exc.reason or exc})",
                       "give coturn a certificate browsers trust for this name (cert= and pkey=)")
        except Exception as exc:
            text = str(exc)
            if "401" in text or "Unauthorized" in text:
                report.add("turn", "fail", f"{url}: the relay refused the minted credentials (401)",
                           "turn_secret must equal coturn's static-auth-secret (use-auth-secret), and both clocks "
                           "must be right")
            else:
                report.add("turn", "fail", f"{url}: {type(exc).__name__}: {text[:160]}",
                           "check the URL and that coturn runs")
        else:
            report.add("turn", "ok", f"{url}: credentials accepted, relay address {relayed}")


async def check_announced_address(settings: Settings, report: Report) -> None:
    """Ask the relay (a STUN server too) which address the media node's packets come from."""
    udp = [u for u in settings.turn_urls if u.startswith("turn:") and "transport=tcp" not in u]
    if not udp:
        return
    import aioice.stun

    host, port, _, _ = turn_server(udp[0])
    source = settings.media_addresses[0] if settings.media_addresses else "0.0.0.0"
    loop = asyncio.get_running_loop()
    request = aioice.stun.Message(message_method=aioice.stun.Method.BINDING,
                                  message_class=aioice.stun.Class.REQUEST)
    answer: asyncio.Future[bytes] = loop.create_future()

    class Probe(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answer.done():
                answer.set_result(data)

    try:
        transport, _ = await loop.create_datagram_endpoint(Probe, local_addr=(source, 0))
    except OSError:
        return  # reported by check_media
    try:
        for _ in range(3):
            transport.sendto(bytes(request), (host, port))
            try:
                data = await asyncio.wait_for(asyncio.shield(answer), 1.0)
                break
            except TimeoutError:
                continue
        else:
            report.add("media address seen", "warn", f"no STUN answer from {host}:{port} (UDP)",
                       "the relay's UDP port may be closed; the turn check says more")
            return
    finally:
        transport.close()
    mapped = aioice.stun.parse_message(data).attributes.get("XOR-MAPPED-ADDRESS")
    if not mapped:
        return
    seen = mapped[0]
    expected = settings.media_announced_address or (settings.media_addresses[0] if settings.media_addresses else None)
    if expected is None:
        report.add("media address seen", "ok", f"the relay sees this machine as {seen}")
    elif seen == expected:
        report.add("media address seen", "ok", f"the relay sees the media node as {seen}, the address it announces")
    else:
        report.add("media address seen", "fail", f"the media node announces {expected} but the relay sees it as {seen}",
                   "set media_announced_address to the address the outside sees (a 1:1 NAT's public IP)")


def check_clock(report: Report, run: Callable[[list[str]], str | None] | None = None) -> None:
    """Visits start and end by the clock (S1, S2); TURN credentials and certificates expire by it."""
    run = run or _run
    synced = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"]) if shutil.which("timedatectl") else None
    if synced == "yes":
        report.add("clock", "ok", "synchronized by NTP (timedatectl)")
        return
    tracking = run(["chronyc", "tracking"]) if shutil.which("chronyc") else None
    if tracking and "Leap status     : Normal" in tracking:
        report.add("clock", "ok", "synchronized by chrony")
        return
    report.add("clock", "warn", "cannot confirm this machine's clock is synchronized "
               f"({'not synchronized' if synced == 'no' else 'no timedatectl or chrony answer'})",
               "run an NTP client (systemd-timesyncd or chrony): visits start and end by the clock")


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


async def check_mail(settings: Settings, report: Report) -> None:
    if settings.smtp_host is None:
        level: Level = "warn" if settings.mode is Mode.PRODUCTION else "ok"
        report.add("mail", level, "no smtp_host: account mail (email confirmation, password reset) waits in the outbox",
                   "set smtp_host (and smtp_username/smtp_password)" if level == "warn" else "")
        return
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(settings.smtp_host, settings.smtp_port), 5)
    except (OSError, TimeoutError) as exc:
        report.add("mail", "fail", f"cannot reach {settings.smtp_host}:{settings.smtp_port} ({exc})",
                   "check smtp_host, smtp_port and the firewall")
        return
    writer.close()
    report.add("mail", "ok", f"{settings.smtp_host}:{settings.smtp_port} answers")


async def diagnose(settings: Settings, *, now: datetime | None = None) -> Report:
    """Every check, in the order a person fixes things."""
    now = now or datetime.now(UTC)
    report = Report()
    check_mode(settings, report)
    check_https(settings, report, now)
    await check_database(settings, report)
    check_recordings(settings, report)
    check_media(settings, report)
    await check_turn(settings, report, now)
    await check_announced_address(settings, report)
    check_clock(report)
    await check_mail(settings, report)
    return report


def doctor_main(settings: Settings, *, as_json: bool = False) -> int:
    import json

    report = asyncio.run(diagnose(settings))
    if as_json:
        print(json.dumps({"ready": not report.failed, "findings": [f.as_json() for f in report.findings]}, indent=2))
    else:
        print(report.render())
    return 1 if report.failed else 0


__all__ = ["Finding", "Report", "diagnose", "doctor_main"]
