"""A visit over HTTPS and WSS in real Chromium (issue 14): why HTTPS is required, shown rather than
said. The page is reached by a name (visits.test, resolved to loopback inside the browser), not as
localhost, so the browser applies the rules a family's phone meets: over plain http the page is not
a secure context and has no camera API at all; over https with the facility's certificate
(trusted by its SPKI pin, as a real CA-issued certificate would be) the visitor gets the camera,
signs in, and holds the visit with the kiosk, the signaling on wss:// and video both ways."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import ipaddress
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from openvisit.tls import server_context
from tests.support import PASSWORD, Api
from tests.support_browser import CHROMIUM, FLAGS, HAVE_CHROMIUM, SHOTS
from tests.support_facility import build_facility
from tests.support_serve import free_port
from tests.test_monitoring import live
from tests.test_pages_call import DECODED, until
from tests.test_visit_e2e import _join

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
HOST = "visits.test"


def certificate(folder: Path) -> tuple[Path, Path, str]:
    """A certificate for visits.test and the base64 SHA-256 of its public key (Chromium's SPKI pin)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return folder / "cert.pem", folder / "key.pem", base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def test_the_camera_needs_https_and_a_visit_runs_over_https_and_wss(api: Api, loopback_only: None,
                                                                          tmp_path: Path) -> None:
    if not HAVE_CHROMIUM:
        pytest.fail("Chromium is not installed (apt-get install chromium)")
    cert_file, key_file, spki = certificate(tmp_path / "tls")
    # The same application also listening with TLS, as `openvisit serve --tls-cert --tls-key` does.
    tls_port = free_port()
    runner = api.client.server.runner
    assert runner is not None
    site = web.TCPSite(runner, "127.0.0.1", tls_port, ssl_context=server_context(cert_file, key_file))
    await site.start()
    http_origin = f"http://{HOST}:{api.client.server.port}"
    https_origin = f"https://{HOST}:{tls_port}"

    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    visit = await live(api, w, visitor)
    kiosk = await _join(api, w.kiosk, visit["id"])

    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *FLAGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1", f"--ignore-certificate-errors-spki-list={spki}"])
        try:
            context = await browser.new_context(viewport={"width": 390, "height": 844})
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))

            # Plain http to a name: no secure context, so no camera API at all (why HTTPS is required).
            await page.goto(f"{http_origin}/app/check.html")
            assert await page.evaluate("() => [window.isSecureContext, typeof navigator.mediaDevices]") == \
                [False, "undefined"]

            # HTTPS: a secure context with the camera; HSTS tells the browser to stay on https.
            response = await page.goto(f"{https_origin}/app/")
            assert response is not None and "max-age=" in (response.headers.get("strict-transport-security") or "")
            assert await page.evaluate("() => [window.isSecureContext, typeof navigator.mediaDevices]") == \
                [True, "object"]
            await page.fill("#email", visitor.extra["email"])
            await page.fill("#password", PASSWORD)
            await page.click("#login button[type=submit]")
            await page.wait_for_url("**/app/visits.html*")
            await page.goto(f"{https_origin}/app/visitor.html?visit={visit['id']}")
            await until(page, DECODED, within=30)  # the kiosk's video, decoded in the browser
            for _ in range(100):  # and the browser's camera reaches the kiosk
                if kiosk.received["video"]:
                    break
                await asyncio.sleep(0.1)
            assert kiosk.received["video"], "the kiosk received no video from the browser"
            assert sockets and all(url.startswith(f"wss://{HOST}:{tls_port}/v1/signaling") for url in sockets), sockets
            await page.screenshot(path=str(SHOTS / "call-over-https-en-phone.png"), full_page=True)
            assert errors == [], errors
        finally:
            await browser.close()
            await kiosk.close()
            await site.stop()
