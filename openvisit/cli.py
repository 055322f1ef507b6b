"""The `openvisit` command: serve, migrate, demo and operator administration."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import uvloop

from openvisit.settings import Mode, Settings, SettingsError, load_settings
from openvisit.tls import CertificateWatcher, TlsProblem, server_context

if TYPE_CHECKING:
    from aiohttp import web


def _settings(args: argparse.Namespace, **overrides: object) -> Settings:
    try:
        return load_settings(getattr(args, "config", None), **overrides)
    except SettingsError as exc:
        print(f"openvisit: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


async def _migrate(settings: Settings) -> None:
    from control_api.db.engine import make_engine
    from control_api.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def _until_signalled(*, certificate_watched: bool = False) -> None:
    """Serve until SIGINT or SIGTERM, then return so the caller shuts down cleanly. SIGHUP
    (a service manager's reload) reloads the certificate when serving HTTPS (CertificateWatcher
    takes it over); without one it must not stop the process, so it is only logged."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if not certificate_watched:
        loop.add_signal_handler(signal.SIGHUP, lambda: logging.getLogger("openvisit").info(
            "SIGHUP: nothing to reload (no certificate served here; settings are read at start)"))
    await stop.wait()


class CannotListen(Exception):
    """The address or port cannot be listened on; its message is the one line the person reads."""


def _listen_problem(host: str, port: int, exc: OSError) -> CannotListen:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        why = (f"port {port} on {host} is already in use (another openvisit, or another program, is listening there); "
               f"stop it, or choose another port: --port {port + 1 if port < 65535 else 8080} "
               "(or OPENVISIT_PORT, or port in the settings file)")
    elif exc.errno == errno.EACCES:
        why = (f"not allowed to listen on port {port} on {host} (ports below 1024 need extra privileges); "
               "choose a port from 1024 up with --port (or OPENVISIT_PORT)")
    elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        why = (f"{host} is not an address of this machine; choose another with --host "
               "(127.0.0.1 for this computer only, 0.0.0.0 for every interface)")
    else:
        why = f"{exc.strerror or exc}"
    return CannotListen(f"openvisit: cannot listen on {where}: {why}")


async def _check_can_listen(host: str, port: int) -> None:
    """Fail fast, before migrations and seeding, when host:port cannot be listened on: bind it the
    way aiohttp will (loop.create_server) and let go at once."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(asyncio.Protocol, host, port)
    except OSError as exc:
        raise _listen_problem(host, port, exc) from exc
    server.close()
    await server.wait_closed()


async def _start_site(app: web.Application, host: str, port: int,
                      ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """start_site, with a port taken meanwhile (after the check) reported the same way."""
    from control_api.app import start_site

    try:
        return await start_site(app, host, port, ssl_context)
    except OSError as exc:
        raise _listen_problem(host, port, exc) from exc


def _tls(settings: Settings) -> tuple[ssl.SSLContext | None, CertificateWatcher | None]:
    """The HTTPS context (TlsProblem, one line, when the files cannot be used) and the watcher
    that reloads a renewed certificate into it; (None, None) for plain HTTP (issue 14)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None, None
    context = server_context(settings.tls_cert_file, settings.tls_key_file)
    return context, CertificateWatcher(context, settings.tls_cert_file, settings.tls_key_file,
                                       interval=settings.tls_reload_seconds)


# Every page, per role, for the startup message (issue 13): what each person opens.
PAGES = (
    ("landing page (sign in, every role)", "/app/"),
    ("visitor and attorney: my visits", "/app/visits.html"),
    ("visitor and attorney: book a visit", "/app/book.html"),
    ("visitor and attorney: facilities and access", "/app/facilities.html"),
    ("visitor and attorney: balance and statement", "/app/billing.html"),
    ("everyone: account", "/app/account.html"),
    ("new visitor or attorney: sign up", "/app/signup.html"),
    ("camera, microphone and connection check", "/app/check.html"),
    ("facility admin console", "/app/admin.html"),
    ("platform operator console", "/app/operator.html"),
    ("officer console (live visits)", "/app/officer.html"),
    ("investigator review (recordings)", "/app/review.html"),
    ("housing-unit kiosk", "/app/kiosk.html"),
    ("API documentation (OpenAPI at /v1/openapi.json)", "/v1/docs"),
)


def startup_message(base: str) -> str:
    width = max(len(name) for name, _ in PAGES)
    lines = [f"openvisit is running at {base}/", "pages:"]
    lines += [f"  {name:<{width}}  {base}{path}" for name, path in PAGES]
    return "\n".join(lines)


async def _serve(settings: Settings, demo: bool) -> None:
    from control_api.app import create_app
    from control_api.services.account_mail import base_url

    context, watcher = _tls(settings)  # before anything else: a bad certificate is found at once
    await _check_can_listen(settings.host, settings.port)
    await _migrate(settings)
    if demo:
        from control_api.demo import seed_demo

        accounts = await seed_demo(settings)
    runner, _port = await _start_site(create_app(settings), settings.host, settings.port, context)
    if watcher is not None:
        watcher.start()
    print(startup_message(base_url(settings)), flush=True)
    if demo:
        print("demo accounts (password for all: demo-password):")
        for role, who in accounts.items():
            print(f"  {role:<13} {who}")
    await _until_signalled(certificate_watched=watcher is not None)
    if watcher is not None:
        await watcher.stop()
    await runner.cleanup()


async def _media_node(settings: Settings, control_url: str) -> None:
    from openvisit.keys import load_or_create_secret
    from sfu.node import media_node_from_control
    from sfu.recording.storage import LocalFolderStorage

    context, watcher = _tls(settings)
    secret = settings.media_secret or load_or_create_secret(settings.keys_dir, "media-secret")
    app, _sfu = await media_node_from_control(
        control_url, secret, ice_servers=[s.model_dump(exclude_none=True) for s in settings.ice_servers],
        addresses=settings.media_addresses, udp_ports=settings.udp_port_range,
        announced_address=settings.media_announced_address,
        media_timeout=settings.media_timeout_seconds,
        recordings=LocalFolderStorage(settings.recordings_dir, min_free_bytes=settings.recordings_min_free_mb << 20),
        stall_seconds=settings.media_stall_seconds, heartbeat_seconds=settings.media_heartbeat_seconds,
        outbox_path=settings.media_outbox_file("node"), trusted_proxies=settings.trusted_proxies)
    runner, port = await _start_site(app, settings.host, settings.port, context)
    if watcher is not None:
        watcher.start()
    scheme = "wss" if context is not None else "ws"
    print(f"openvisit media node: signaling at {scheme}://{settings.host}:{port}/v1/signaling, "
          f"reporting to {control_url}", flush=True)
    await _until_signalled(certificate_watched=watcher is not None)
    if watcher is not None:
        await watcher.stop()
    await runner.cleanup()


async def _demo(settings: Settings) -> None:
    from control_api.demo import seed_demo

    await _migrate(settings)
    accounts = await seed_demo(settings)
    print("demo data ready; accounts (password for all: demo-password):")
    for role, who in accounts.items():
        print(f"  {role:<13} {who}")


async def _create_operator(settings: Settings, email: str, name: str, password: str) -> None:
    from control_api.demo import create_operator

    await _migrate(settings)
    await create_operator(settings, email=email, name=name, password=password)
    print(f"operator {email} created")


async def _audit_verify(settings: Settings) -> int:
    """Walk the whole hash chain; exit 0 when intact, 1 at the first altered or missing entry."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from control_api.db.engine import make_engine
    from control_api.services import audit

    engine = make_engine(settings.effective_database_url)
    try:
        async with async_sessionmaker(engine)() as session:
            report = await audit.verify(session)
    finally:
        await engine.dispose()
    if report.ok:
        print(f"audit log intact: {report.entries} entries, head {report.head_hash}")
        return 0
    print(f"audit log TAMPERED: {report.problem} (entries verified before it: {report.entries})", file=sys.stderr)
    return 1


def _export_verify(archive: str, public_key_file: str | None) -> int:
    """Check an exported visit with nothing but the archive and the server's public key."""
    from pathlib import Path

    from openvisit.export_archive import verify_archive
    from openvisit.keys import load_public_key

    key = load_public_key(Path(public_key_file).read_bytes()) if public_key_file else None
    report = verify_archive(Path(archive), key)
    if report.ok:
        print(f"export verified: {report.files_checked} files match the signed manifest, "
              f"{report.audit_entries} audit entries intact")
        if report.key_from_archive:
            print("note: checked against the public key inside the archive; pass --public-key with the server's "
                  "published key to rule out a re-signed archive")
        return 0
    for problem in report.problems:
        print(f"export FAILED: {problem}", file=sys.stderr)
    return 1


def _recordings_verify(settings: Settings, visit_ids: list[str]) -> int:
    """Re-hash stored recordings against their signed manifests (all of them, or the visits named)."""
    from openvisit.export_archive import verify_stored
    from openvisit.keys import load_or_create_signing_key

    public_key = load_or_create_signing_key(settings.keys_dir).public_key()
    root = settings.recordings_dir
    folders = [root / v for v in visit_ids] if visit_ids else sorted(p for p in root.glob("*") if p.is_dir())
    notes: list[str] = []
    problems = [problem for folder in folders for problem in verify_stored(folder, public_key, notes)]
    for note in notes:
        print(f"note: {note}")
    for problem in problems:
        print(f"recording FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"recordings verified: {len(folders)} visits match their signed manifests")
    return 1 if problems else 0


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    """One line on success, one line saying what to do on failure (exit 1)."""
    import time
    from pathlib import Path

    from openvisit.backup import BackupError, create_backup, restore_backup

    started = time.monotonic()
    try:
        if args.command == "backup":
            folder = create_backup(settings, Path(args.destination))
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(f"backup written: {folder} ({size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)")
            return 0
        report = restore_backup(settings, Path(args.source), replace=args.replace)
    except BackupError as exc:
        print(f"openvisit {args.command}: {exc}", file=sys.stderr)
        return 1
    for problem in report.problems:
        print(f"restore FAILED verification: {problem}", file=sys.stderr)
    if report.problems:
        return 1
    print(f"restored and verified: {report.files} files, audit chain intact ({report.audit_entries} entries), "
          f"{report.recordings_checked} recordings match their signed manifests ({time.monotonic() - started:.1f} s)")
    return 0


def _tls_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS and WSS (also tls_cert_file)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert (also tls_key_file)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openvisit", description="openvisit video visitation")
    parser.add_argument("--config", help="TOML settings file (also OPENVISIT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the control API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--demo", action="store_true",
                       help="demo mode: demo facility and accounts, movable test clock")
    _tls_flags(serve)

    node = sub.add_parser("sfu", help="run a standalone media node (SFU + signaling)")
    node.add_argument("--control-url", required=True, help="the control API's base URL")
    node.add_argument("--host")
    node.add_argument("--port", type=int)
    _tls_flags(node)

    sub.add_parser("migrate", help="create or upgrade the database schema")
    sub.add_parser("demo", help="create the demo facility and accounts in the database")

    audit = sub.add_parser("audit", help="the append-only audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    audit_sub.add_parser("verify", help="check the hash chain: any edited or removed entry is reported")

    export = sub.add_parser("export", help="exported visit archives")
    export_sub = export.add_subparsers(dest="export_command", required=True)
    verify = export_sub.add_parser("verify", help="check an archive's files, signed manifest and audit excerpt")
    verify.add_argument("archive")
    verify.add_argument("--public-key", help="the server's public key (PEM, from GET /v1/media/public-key)")

    recordings = sub.add_parser("recordings", help="stored recordings")
    recordings_sub = recordings.add_subparsers(dest="recordings_command", required=True)
    stored = recordings_sub.add_parser("verify", help="re-hash stored files against their signed manifests")
    stored.add_argument("visit_ids", nargs="*", help="visits to check (all when none)")

    backup = sub.add_parser("backup", help="snapshot the database, recordings, photo IDs and signing key")
    backup.add_argument("destination", help="folder to create the backup in (a new subfolder per backup)")
    restore = sub.add_parser("restore", help="restore a backup into this configuration, then verify it")
    restore.add_argument("source", help="the backup folder (openvisit-backup-…)")
    restore.add_argument("--replace", action="store_true", help="overwrite a database or data folder holding data")

    doctor = sub.add_parser("doctor", help="check this configuration before go-live and say what to fix")
    doctor.add_argument("--json", action="store_true", help="findings as JSON")

    op = sub.add_parser("create-operator", help="create a platform operator account")
    op.add_argument("--email", required=True)
    op.add_argument("--name", required=True)
    op.add_argument("--password", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    try:
        _main(argv)
    except CannotListen as exc:  # one clear line, not a traceback
        print(exc, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except TlsProblem as exc:
        print(f"openvisit: cannot serve HTTPS: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def _main(argv: Sequence[str] | None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        overrides: dict[str, object] = {"host": args.host, "port": args.port, "tls_cert_file": args.tls_cert,
                                        "tls_key_file": args.tls_key}
        if args.demo:
            overrides["mode"] = Mode.DEMO
        settings = _settings(args, **overrides)
        uvloop.run(_serve(settings, demo=args.demo))
    elif args.command == "sfu":
        settings = _settings(args, host=args.host, port=args.port, tls_cert_file=args.tls_cert,
                             tls_key_file=args.tls_key)
        uvloop.run(_media_node(settings, args.control_url))
    elif args.command == "migrate":
        uvloop.run(_migrate(_settings(args)))
        print("database is up to date")
    elif args.command == "demo":
        uvloop.run(_demo(_settings(args, mode=Mode.DEMO)))
    elif args.command == "create-operator":
        uvloop.run(_create_operator(_settings(args), args.email, args.name, args.password))
    elif args.command == "recordings":
        raise SystemExit(_recordings_verify(_settings(args), args.visit_ids))
    elif args.command == "export":
        raise SystemExit(_export_verify(args.archive, args.public_key))
    elif args.command in ("backup", "restore"):
        raise SystemExit(_backup_or_restore(_settings(args), args))
    elif args.command == "doctor":
        from openvisit.doctor import doctor_main

        raise SystemExit(doctor_main(_settings(args), as_json=args.json))
    elif args.command == "audit":
        raise SystemExit(uvloop.run(_audit_verify(_settings(args))))


if __name__ == "__main__":
    main()
