"""Visitor and attorney pages before booking (issue 13): sign up, confirm the email from the mailed
link, sign in, upload a photo ID, ask a facility for access (V1), see a denial's reason and apply
again; attorneys ask for Bar verification per facility (V2); the account page (details, password,
two-step sign-in, sessions). Every page and state: screenshots at both sizes and an axe scan, in
English and Spanish. The journeys act only through pages; the API is read only to check results
(and the facility admin's decision is made through the API, standing in for the admin console)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pyotp
import pytest
import zxingcpp
from PIL import Image

from tests.support import PASSWORD, PNG, Api
from tests.support_browser import PHONE, check_page, chromium, new_page  # noqa: F401 (fixture)
from tests.support_facility import build_facility

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CONFIRMED = {"en": "is confirmed", "es": "quedó confirmado"}


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def mailed_link(api: Api, email: str, kind: str, marker: str) -> str:
    body = (await api.mail(email, kind))[0]["body"]
    link = next(w for w in body.split() if marker in w)
    return link.replace("http://127.0.0.1:8080", base(api))


async def sign_up_in_page(page: Any, api: Api, language: str, *, email: str, name: str,
                          attorney: bool = False) -> None:
    await page.goto(f"{base(api)}/app/signup.html")
    await page.wait_for_selector("#signup-language option", state="attached")
    assert await page.get_attribute("html", "lang") == language
    assert await page.input_value("#signup-language") == language  # defaults to the page's language
    if attorney:
        await page.check("input[name=role][value=attorney]")
        await page.wait_for_selector("#bar-fields:not([hidden])")
        await page.fill("#bar_number", "IL-123456")
        await page.select_option("#bar_state", "IL")
    await page.fill("#legal_name", name)
    await page.fill("#postal_address", "12 Elm Street, Springfield, IL 62704")
    await page.fill("#date_of_birth", "1984-03-09")
    await page.fill("#email", email)
    await page.fill("#phone", "+1 217 555 0142")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_again", PASSWORD)
    await page.click("#signup-submit")
    await page.wait_for_selector("#sent:not([hidden])")
    assert email in (await page.text_content("#sent-to") or "")


async def sign_in_in_page(page: Any, api: Api, email: str) -> None:
    await page.goto(f"{base(api)}/app/")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_url("**/app/visits.html")


async def journey(api: Api, chromium: Any, tmp_path: Path, language: str) -> None:  # noqa: F811
    world = await build_facility(api, name=f"County Jail {language.upper()}")
    fid = world.facility_id
    email = f"family-{language}-{uuid.uuid4().hex[:6]}@example.org"
    name = "Rosa Martínez" if language == "es" else "Jordan Lee"
    page = await new_page(chromium, viewport=PHONE, language=language)

    # Sign up (the 202 "check your email" answer, whatever the address).
    await page.goto(f"{base(api)}/app/signup.html")
    await page.wait_for_selector("#signup-language option", state="attached")
    await check_page(page, "signup", language=language)
    await sign_up_in_page(page, api, language, email=email, name=name)
    await check_page(page, "signup-sent", language=language)

    # Confirm with the mailed link, opened in the page.
    await page.goto(await mailed_link(api, email, "confirm-email", "#confirm="))
    await page.wait_for_selector(f"#confirm-status:has-text('{CONFIRMED[language]}')")
    assert "#" not in page.url
    await check_page(page, "account-confirmed", language=language)

    # Sign in; the facilities page first says what is missing (the photo ID, V1).
    await sign_in_in_page(page, api, email)
    await page.goto(f"{base(api)}/app/facilities.html")
    await page.wait_for_selector("#needs:not([hidden]) a[href='/app/account.html#photo-id']")
    assert await page.is_disabled(f"[data-facility='{fid}'] button.request")
    assert await page.is_visible("#mine-empty")
    await check_page(page, "facilities-needs-photo", language=language)

    # Upload a photo ID on the account page: a preview, then the state.
    await page.click("#needs a[href='/app/account.html#photo-id']")
    await page.wait_for_selector("#account:not([hidden]) #photo-state:not(:empty)")
    assert await page.get_attribute("#photo-file", "capture") == "environment"
    assert await page.get_attribute("#photo-file", "accept") == "image/jpeg,image/png"
    await check_page(page, "account", language=language)
    photo = tmp_path / "id.png"
    photo.write_bytes(PNG)
    await page.set_input_files("#photo-file", str(photo))
    await page.wait_for_selector("#photo-figure:not([hidden]) #photo-preview[src^='blob:']")
    await page.click("#photo-upload")
    # The status says "Uploading…" first: wait for the answer (its text has no ellipsis), not the start.
    await page.wait_for_selector("#photo-status:not([hidden]):not(:has-text('…'))")
    await page.wait_for_selector("#photo-upload:disabled")
    await check_page(page, "account-photo-uploaded", language=language)

    # Ask the facility for access (V1).
    await page.goto(f"{base(api)}/app/facilities.html")
    await page.wait_for_selector("#find:not([hidden])")
    assert await page.is_hidden("#needs")
    await page.fill("#search", "no such place")
    await page.wait_for_selector("#find-count:has-text('no such place')")
    assert await page.locator("#facility-list li").count() == 0
    await page.fill("#search", world.facility["name"][:6])
    await page.click(f"[data-facility='{fid}'] button.request")
    await page.wait_for_selector("#status:not([hidden]), #error:not([hidden])")
    assert await page.is_hidden("#error"), await page.text_content("#error")
    await page.wait_for_selector("#mine-list .request.pending")
    await check_page(page, "facilities-pending", language=language)
    [pending] = (await world.admin.get(world.path("/access-requests?status=pending"))).ok()
    assert pending["applicant"]["legal_name"] == name and pending["applicant"]["has_photo_id"] is True

    # The admin denies with a reason; the page shows it; the visitor applies again.
    reason = {"es": "La foto no se lee: súbala otra vez.", "en": "The photo is blurred: send a sharper one."}[language]
    (await world.admin.post(world.path(f"/access-requests/{pending['id']}/decision"),
                            {"decision": "deny", "reason": reason})).ok()
    await page.reload()
    await page.wait_for_selector(f"#mine-list .request.denied .reason:has-text('{reason}')")
    assert reason in (await page.text_content(f"[data-facility='{fid}'] .reason") or "")
    await check_page(page, "facilities-denied", language=language)
    await page.click(f"[data-facility='{fid}'] button.reapply")
    await page.wait_for_selector("#mine-list .request.pending")
    statuses = [r["status"] for r in (await world.admin.get(world.path("/access-requests"))).ok()]
    assert statuses == ["denied", "pending"]
    await check_page(page, "facilities-reapplied", language=language)
    await page.context.close()


async def test_a_new_visitor_signs_up_confirms_uploads_an_id_and_asks_for_access(
        api: Api, chromium: Any, tmp_path: Path) -> None:  # noqa: F811
    await journey(api, chromium, tmp_path, "en")


async def test_the_same_journey_in_spanish(api: Api, chromium: Any, tmp_path: Path) -> None:  # noqa: F811
    await journey(api, chromium, tmp_path, "es")


async def test_sign_up_errors_show_next_to_their_fields(api: Api, chromium: Any) -> None:  # noqa: F811
    """Client checks first; the API's 422 `errors` list lands next to its field too (aria-describedby)."""
    for language in ("en", "es"):
        page = await new_page(chromium, language=language)
        await page.goto(f"{base(api)}/app/signup.html")
        await page.wait_for_selector("#signup-language option", state="attached")
        await page.click("#signup-submit")
        await page.wait_for_selector("#err-legal_name:not([hidden])")
        assert await page.get_attribute("#legal_name", "aria-invalid") == "true"
        assert "err-legal_name" in (await page.get_attribute("#legal_name", "aria-describedby") or "")
        assert await page.evaluate("document.activeElement.id") == "legal_name"
        await check_page(page, "signup-errors", language=language)
        # The browser accepts "a@b" as an email; the API does not: its field error shows by the field.
        await page.fill("#legal_name", "Sam Doe")
        await page.fill("#postal_address", "1 Main Street, Springfield")
        await page.fill("#date_of_birth", "1990-01-01")
        await page.fill("#email", "sam@localhost")
        await page.fill("#phone", "2175550100")
        await page.fill("#password", PASSWORD)
        await page.fill("#password_again", PASSWORD + "x")
        await page.click("#signup-submit")
        await page.wait_for_selector("#err-password_again:not([hidden])")
        assert await page.is_hidden("#err-email")
        await page.fill("#password_again", PASSWORD)
        await page.click("#signup-submit")
        await page.wait_for_selector("#err-email:not([hidden])")
        assert await page.get_attribute("#email", "aria-invalid") == "true"
        assert await page.is_hidden("#err-legal_name")
        # The mailed-link pages without a session: forgot, and an expired reset link.
        await page.goto(f"{base(api)}/app/account.html#forgot")
        await page.wait_for_selector("#forgot:not([hidden])")
        await check_page(page, "account-forgot", language=language)
        await page.goto(f"{base(api)}/app/account.html#reset=not-a-real-token-123")
        await page.fill("#reset-password", "a brand new passphrase")
        await page.fill("#reset-again", "a brand new passphrase")
        await page.click("#reset button[type=submit]")
        await page.wait_for_selector("#reset-error:not([hidden])")
        await check_page(page, "account-reset-invalid", language=language)
        await page.context.close()


async def test_attorney_account_and_bar_verification(api: Api, chromium: Any) -> None:  # noqa: F811
    """An attorney signs up with the Bar number and state, manages the account (details, password,
    two-step sign-in, other sessions), and asks a facility to verify the Bar number (V2)."""
    world = await build_facility(api)
    fid = world.facility_id
    email = f"counsel-{uuid.uuid4().hex[:6]}@example.org"
    page = await new_page(chromium)
    await sign_up_in_page(page, api, "en", email=email, name="Avery Counsel", attorney=True)
    await api.confirm_email(email)
    other = (await api.anonymous.post("/v1/auth/login", {"email": email, "password": PASSWORD})).ok()
    await sign_in_in_page(page, api, email)
    me_row = (await api.anonymous.get("/v1/me", headers={"Authorization": f"Bearer {other['access_token']}"})).ok()
    assert (me_row["role"], me_row["bar_number"], me_row["bar_state"]) == ("attorney", "IL-123456", "IL")

    await page.goto(f"{base(api)}/app/account.html")
    await page.wait_for_selector("#bar:not([hidden]) #bar-number:has-text('IL-123456')")
    assert "Illinois" in (await page.text_content("#bar-state") or "")
    await page.wait_for_selector("#session-list .session >> nth=1")
    await check_page(page, "account-attorney")

    # Details: a new phone number; the server's answer fills the form again.
    await page.fill("#phone", "+1 312 555 0199")
    await page.click("#profile-save")
    await page.wait_for_selector("#profile-status:not([hidden])")
    assert (await api.anonymous.get("/v1/me", headers={"Authorization": f"Bearer {other['access_token']}"}
                                    )).ok()["phone"] == "+1 312 555 0199"

    # Sign out the other device, after confirming.
    await page.click("#session-list .session:not(:has(.badge.ok)) button")
    await page.wait_for_selector("#session-list .confirm:not([hidden])")
    await check_page(page, "account-sessions-confirm")
    await page.click("#session-list .confirm button.danger")
    await page.wait_for_selector("#sessions-status:not([hidden])")
    assert await page.locator("#session-list .session").count() == 1
    (await api.anonymous.get("/v1/me", headers={"Authorization": f"Bearer {other['access_token']}"})).problem(401)

    # Two-step sign-in, optional for visitors and attorneys.
    await page.click("#tf-start")
    await page.wait_for_selector("#tf-setup:not([hidden]) #tf-secret:not(:empty)")
    secret = (await page.text_content("#tf-secret") or "").strip()
    # The QR code, read off the screen as an authenticator app would, carries the same key.
    shot = Image.open(io.BytesIO(await page.locator("#tf-qr img").screenshot()))
    [read] = zxingcpp.read_barcodes(shot)
    assert read.text == await page.get_attribute("#tf-link", "href")
    assert pyotp.parse_uri(read.text).secret == secret
    await page.fill("#tf-code", pyotp.TOTP(secret).at(api.ctx.clock.now()))
    await page.click("#tf-setup button[type=submit]")
    await page.wait_for_selector("#tf-codes-box:not([hidden])")
    assert await page.locator("#tf-codes li").count() == 10
    await page.wait_for_selector("#tf-off:not([hidden])")
    await check_page(page, "account-two-step-on")

    # Password change: a wrong current password is said plainly.
    await page.fill("#current-password", "not my password")
    await page.fill("#new-password", "another long passphrase")
    await page.fill("#new-password-again", "another long passphrase")
    await page.click("#password-save")
    await page.wait_for_selector("#password-error:has-text('wrong')")
    await page.fill("#current-password", PASSWORD)
    await page.click("#password-save")
    await page.wait_for_selector("#password-status:not([hidden])")

    # Bar verification per facility (V2): ask, then the admin verifies.
    await page.goto(f"{base(api)}/app/facilities.html")
    await page.wait_for_selector(f"[data-facility='{fid}'] button.bar-request")
    await page.click(f"[data-facility='{fid}'] button.bar-request")
    await page.wait_for_selector(f"[data-facility='{fid}'] .bar-state .badge.pending")
    await check_page(page, "facilities-attorney")
    [ver] = (await world.admin.get(world.path("/bar-verifications?status=pending"))).ok()
    assert (ver["bar_number"], ver["bar_state"]) == ("IL-123456", "IL")
    (await world.admin.post(world.path(f"/bar-verifications/{ver['id']}/decision"), {"decision": "verify"})).ok()
    await page.reload()
    await page.wait_for_selector(f"[data-facility='{fid}'] .bar-state .badge.verified")
    assert page.errors == []
    await page.context.close()
