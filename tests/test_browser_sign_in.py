"""Staff sign in with two-step sign-in in a real browser (issue 12): the officer console walks a
new officer through setting up an authenticator app, shows the recovery codes once, and from then
on asks for the app's code after the password. Headless Debian Chromium through Playwright."""

from __future__ import annotations

import io
from typing import Any

import pyotp
import pytest
import zxingcpp
from PIL import Image

from openvisit.settings import Settings
from tests.support import PASSWORD, Api
from tests.support_browser import SHOTS
from tests.support_facility import build_facility


def code_now(secret: str, api: Api) -> str:
    return pyotp.TOTP(secret).at(api.ctx.clock.now())


@pytest.mark.parametrize("viewport", [{"width": 390, "height": 844}, {"width": 1280, "height": 800}],
                         ids=["phone", "desktop"])
async def test_officer_sets_up_and_uses_an_authenticator_app(
        api: Api, settings: Settings, chromium: Any, viewport: dict[str, int]) -> None:
    world = await build_facility(api)
    operator, officer = world.operator, world.officer
    settings.staff_second_factor = True  # as in production mode: from the next sign-in on
    base = f"http://{api.client.server.host}:{api.client.server.port}"
    name = "phone" if viewport["width"] < 600 else "desktop"
    errors: list[str] = []

    page = await chromium.new_page(viewport=viewport)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/app/officer.html")
    await page.fill("#email", officer.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#enrol-secret:not(:empty)", timeout=10_000)
    assert await page.is_hidden("#login")
    secret = (await page.text_content("#enrol-secret") or "").strip()
    assert await page.get_attribute("#enrol-link", "href") == pyotp.TOTP(secret).provisioning_uri(
        name=officer.extra["email"], issuer_name="openvisit")
    await page.wait_for_selector("#enrol-qr img")  # the same key as a QR code for the phone's camera
    [read] = zxingcpp.read_barcodes(Image.open(io.BytesIO(await page.locator("#enrol-qr img").screenshot())))
    assert read.text == await page.get_attribute("#enrol-link", "href")
    await page.screenshot(path=str(SHOTS / f"sign-in-enrol-{name}.png"), full_page=True)
    await page.fill("#enrol-code", code_now(secret, api))
    await page.click("#enrol button[type=submit]")
    await page.wait_for_selector("#enrol-done:not([hidden])", timeout=10_000)
    codes = await page.locator("#enrol-codes li").all_text_contents()
    assert len(codes) == 10
    await page.screenshot(path=str(SHOTS / f"sign-in-recovery-codes-{name}.png"), full_page=True)
    await page.click("#enrol-continue")
    await page.wait_for_selector("#list:not([hidden])", timeout=10_000)
    assert "No visits are live" in (await page.text_content("#list") or "")
    await page.close()

    # Next time: the password, then the app's code (the next time step: the set-up used this one).
    await api.advance(operator, 30)
    page = await chromium.new_page(viewport=viewport)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(f"{base}/app/officer.html")
    await page.fill("#email", officer.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#second-factor-field:not([hidden])", timeout=10_000)
    assert "authenticator" in (await page.text_content("#login-error") or "")
    await page.screenshot(path=str(SHOTS / f"sign-in-code-{name}.png"), full_page=True)
    await page.fill("#second-factor", "000000" if code_now(secret, api) != "000000" else "111111")
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#login-error:has-text('wrong')")
    await page.fill("#second-factor", code_now(secret, api))
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#list:not([hidden])", timeout=10_000)
    assert await page.is_hidden("#login")

    # A recovery code works in the same field, once.
    page2 = await chromium.new_page(viewport=viewport)
    await page2.goto(f"{base}/app/officer.html")
    await page2.fill("#email", officer.extra["email"])
    await page2.fill("#password", PASSWORD)
    await page2.click("#login button[type=submit]")
    await page2.wait_for_selector("#second-factor-field:not([hidden])", timeout=10_000)
    await page2.fill("#second-factor", codes[0])
    await page2.click("#login button[type=submit]")
    await page2.wait_for_selector("#list:not([hidden])", timeout=10_000)
    assert errors == []


async def test_forgotten_password_and_email_confirmation_from_the_mailed_links(
        api: Api, chromium: Any) -> None:
    """The links in the mail open /app/account.html, which confirms the email or sets a new password."""
    base = f"http://{api.client.server.host}:{api.client.server.port}"
    visitor = await api.sign_up(confirm=False)
    email = visitor.extra["email"]
    errors: list[str] = []
    page = await chromium.new_page(viewport={"width": 390, "height": 844})
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    link = next(w for w in (await api.mail(email, "confirm-email"))[0]["body"].split() if "#confirm=" in w)
    await page.goto(link.replace("http://127.0.0.1:8080", base))
    await page.wait_for_selector("#confirm-status:has-text('is confirmed')")
    assert "#" not in page.url  # the token left the address bar
    assert (await visitor.get("/v1/me")).ok()["email_confirmed"] is True

    await page.goto(f"{base}/app/visitor.html")
    await page.click("text=Forgot your password?")
    await page.fill("#forgot-email", email)
    await page.click("#forgot button[type=submit]")
    await page.wait_for_selector("#forgot-status:not([hidden])")
    await page.screenshot(path=str(SHOTS / "account-forgot-phone.png"), full_page=True)
    link = next(w for w in (await api.mail(email, "reset-password"))[0]["body"].split() if "#reset=" in w)
    await page.goto(link.replace("http://127.0.0.1:8080", base))
    await page.fill("#reset-password", "a new and long passphrase")
    await page.fill("#reset-again", "a new and long passphrase")
    await page.click("#reset button[type=submit]")
    await page.wait_for_selector("#reset-status:not([hidden])")
    await page.screenshot(path=str(SHOTS / "account-reset-phone.png"), full_page=True)
    (await api.anonymous.post("/v1/auth/login", {"email": email, "password": "a new and long passphrase"})).ok()
    (await visitor.get("/v1/me")).problem(401)  # the reset signed out the old session
    assert errors == []
