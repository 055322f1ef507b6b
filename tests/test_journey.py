"""The whole journey in browsers (issue 13 "Done means"), through pages only, one Playwright context
per person: a new visitor signs up, confirms the mailed link, signs in, uploads a photo ID and asks
a facility for access (V1); the admin approves it on admin.html; the visitor books and pays
(B6, M1) and sees the visit on visits.html; the kiosk checks the resident in when the join window
opens (S1, S6) and both hold the visit with each other's video; the visitor books another visit
and cancels it with notice (M3a), with the credit explained, then sees the credit and the statement
line (M9) on billing.html; an attorney signs up, has the Bar number verified by the admin (V2) and
books a privileged visit that says it is never recorded (P1); the admin changes a unit's hours and
a price (A2, A3) and the visitor's calendar follows; the visitor files a credit request and the
operator decides it (M6). Then the same visitor journey in Spanish (steps 1-3 and 5).

The database and the API are only read to check results; the demo outbox gives the mailed link;
the test clock moves through the API where time must pass (to the visit's start, S1). Pages that
are covered in depth elsewhere (tests/test_pages_*.py, tests/test_browser_e2e.py) are kept short.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support import PASSWORD, PNG, Api
from tests.support_browser import SHOTS, check_page, chromium, new_page  # noqa: F401 (fixture)
from tests.support_facility import FacilityWorld, build_facility

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ZONE = ZoneInfo("America/Chicago")
# What the pages say, per language (the strings come from control_api/static/locales/<lang>/).
SAYS = {
    "en": {"confirmed": "is confirmed", "done": "Your visit is booked", "confirmedVisit": "Confirmed",
           "credit": "You will get $5.00 in credit", "cancelled": "Cancelled", "creditAdded": "Credit added",
           "notice": "24 hours"},
    "es": {"confirmed": "quedó confirmado", "done": "Su visita está reservada", "confirmedVisit": "Confirmada",
           "credit": "Recibirá $5.00 de crédito", "cancelled": "Cancelada", "creditAdded": "Crédito agregado",
           "notice": "24 horas"},
}

# Stats of the call page's peer connection (call.js exposes window.callPc), as in test_browser_e2e.
INBOUND = """async () => {
  if (!window.callPc) return null;
  const out = {video: 0, audio: 0};
  (await window.callPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.video = r.framesDecoded || 0;
    if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audio = r.bytesReceived || 0;
  });
  return out;
}"""


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def sign_in(page: Any, api: Api, email: str, home: str) -> None:
    await page.goto(f"{base(api)}/app/")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_url(f"**{home}*")


async def receives_video(page: Any, within: float = 30) -> dict[str, int]:
    """Until the call page decodes the other side's video and receives its audio."""
    async with asyncio.timeout(within):
        while True:
            stats = await page.evaluate(INBOUND)
            if stats and stats["video"] >= 15 and stats["audio"] > 0:
                return dict(stats)
            await asyncio.sleep(0.25)


# ------------------------------------------------------------------ the visitor's steps (1, 3, 5)

async def sign_up(page: Any, api: Api, tmp_path: Path, *, name: str, email: str, language: str,
                  attorney: bool = False) -> None:
    """Step 1: sign up, confirm with the mailed link, sign in, upload a photo ID (V1)."""
    await page.goto(f"{base(api)}/app/signup.html")
    await page.wait_for_selector("#signup-language option", state="attached")
    assert await page.get_attribute("html", "lang") == language
    if attorney:
        await page.check("input[name=role][value=attorney]")
        await page.wait_for_selector("#bar-fields:not([hidden])")
        await page.fill("#bar_number", "IL-765432")
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

    body = (await api.mail(email, "confirm-email"))[0]["body"]  # the demo outbox
    link = next(word for word in body.split() if "#confirm=" in word).replace("http://127.0.0.1:8080", base(api))
    await page.goto(link)
    await page.wait_for_selector(f"#confirm-status:has-text('{SAYS[language]['confirmed']}')")

    await sign_in(page, api, email, "/app/visits.html")
    await page.goto(f"{base(api)}/app/account.html#photo-id")
    await page.wait_for_selector("#account:not([hidden]) #photo-state:not(:empty)")
    photo = tmp_path / f"id-{uuid.uuid4().hex[:6]}.png"
    photo.write_bytes(PNG)
    await page.set_input_files("#photo-file", str(photo))
    await page.wait_for_selector("#photo-figure:not([hidden]) #photo-preview[src^='blob:']")
    await page.click("#photo-upload")
    # The status says "Uploading…" first: wait for the answer (its text has no ellipsis), not the start.
    await page.wait_for_selector("#photo-status:not([hidden]):not(:has-text('…'))")


async def ask_for_access(page: Any, api: Api, w: FacilityWorld, *, bar: bool = False) -> None:
    """Step 1 (end): ask the facility for access (V1); attorneys also ask for Bar verification (V2)."""
    fid = w.facility_id
    await page.click("nav a[href='/app/facilities.html']")
    await page.wait_for_selector("#find:not([hidden])")
    await page.fill("#search", w.facility["name"][:8])
    await page.click(f"[data-facility='{fid}'] button.request")
    await page.wait_for_selector("#mine-list .request.pending")
    if bar:
        await page.click(f"[data-facility='{fid}'] button.bar-request")
        await page.wait_for_selector(f"[data-facility='{fid}'] .bar-state .badge.pending")


async def admin_approves(admin: Any, name: str, *, bar: bool = False) -> None:
    """Step 2: the admin approves the access request (photo ID shown) and, for an attorney, verifies
    the Bar number, on admin.html."""
    await admin.click("#tab-requests")
    await admin.reload()
    card = f"#access-list article.request:has-text('{name}')"
    await admin.wait_for_selector(f"{card} img[src^='blob:']")
    await admin.click(f"{card} button.approve")
    await admin.wait_for_selector(f"{card} [role=status]:has-text('Approved')")
    if bar:
        bar_card = f"#bar-list article:has-text('{name}')"
        await admin.click(f"{bar_card} button.approve")
        await admin.wait_for_selector(f"{bar_card} [role=status]:not(:empty)")


async def find_resident(page: Any, *, privileged: bool = False) -> None:
    await page.click("nav a[href='/app/book.html']")
    await page.wait_for_selector("#find:not([hidden])")
    if privileged:
        await page.check("#type-privileged")
    await page.fill("#booking-number", "R-1")
    await page.click("#find button[type=submit]")
    await page.wait_for_selector("#times .slot")


async def pick_slot(page: Any, day_index: int, slot_index: int) -> str:
    days = page.locator("#week .day:not([disabled])")
    await days.nth(day_index).click()
    slots = page.locator("#times .slot")
    slot = slots.nth(min(slot_index, await slots.count() - 1))
    start = str(await slot.get_attribute("data-start"))
    await slot.click()
    await page.wait_for_selector("#quote-body:not([hidden])")
    return start


async def book_and_pay(page: Any, language: str, *, day_index: int, slot_index: int) -> str:
    """Step 3: book.html, the quote, the test card; the new visit's id."""
    await find_resident(page)
    await pick_slot(page, day_index, slot_index)
    await page.fill("#card-number", "4242 4242 4242 4242")
    await page.fill("#card-expiry", "12/39")
    await page.fill("#card-cvc", "123")
    await page.click("#pay-button")
    await page.wait_for_selector(f"#done:has-text('{SAYS[language]['done']}')")
    return str(await page.get_attribute("#done", "data-visit"))


async def cancel_with_notice(page: Any, visit: str, language: str) -> None:
    """Step 5: cancel on visits.html; the credit is explained before confirming (M3a, A6)."""
    await page.click("#done a[href='/app/visits.html']")
    await page.click(f"button[data-cancel='{visit}']")
    await page.wait_for_selector(f"#cancel-credit:has-text('{SAYS[language]['credit']}')")
    assert SAYS[language]["notice"] in await page.inner_text("#cancel-credit")
    await page.fill("#cancel-reason", "Un cambio de planes" if language == "es" else "A change of plans")
    await page.click("#cancel-confirm")
    await page.wait_for_selector("#notice:has-text('$5.00'):has-text('M3a')")
    await page.wait_for_selector(f"#past li[data-visit='{visit}']:has-text('{SAYS[language]['cancelled']}')")


async def billing_shows_the_credit(page: Any, language: str) -> None:
    """Step 5 (end): the balance, the lot and the statement line with its rule (M2, M5, M9)."""
    await page.click("nav a[href='/app/billing.html']")
    await page.wait_for_selector("#balance-section:not([hidden])")
    assert await page.inner_text("#balance") == "$5.00"
    statement = await page.inner_text("#statement tbody")
    assert SAYS[language]["creditAdded"] in statement and "M3a" in statement and "+$5.00" in statement


# ------------------------------------------------------------------ the journeys

async def test_the_whole_journey_through_pages(api: Api, chromium: Any, tmp_path: Path,  # noqa: F811
                                               loopback_only: None) -> None:
    w = await build_facility(api, name="Lakeside County Jail")
    fid = w.facility_id

    # 1. A new visitor signs up, confirms, signs in, uploads a photo ID, asks for access (V1).
    family = await new_page(chromium)
    name, email = "Jordan Lee", f"jordan-{uuid.uuid4().hex[:6]}@example.org"
    await sign_up(family, api, tmp_path, name=name, email=email, language="en")
    await ask_for_access(family, api, w)
    await check_page(family, "journey-facilities-pending")

    # 2. The admin approves it on the admin console.
    admin = await new_page(chromium)
    await sign_in(admin, api, w.admin.extra["email"], "/app/admin.html")
    await admin_approves(admin, name)
    await check_page(admin, "journey-admin-approved")
    await family.reload()
    await family.wait_for_selector(f"#mine-list .request.approved a[href*='{fid}']")
    visitor_id = (await w.admin.get(w.path("/access-requests?status=approved"))).ok()[0]["visitor_id"]

    # 3. The visitor books the first time on offer (within the join window: min lead 0) and pays.
    held = await book_and_pay(family, "en", day_index=0, slot_index=0)
    await check_page(family, "journey-book-done")
    await family.click("#done a[href='/app/visits.html']")
    await family.wait_for_selector(f"li[data-visit='{held}']:has-text('Confirmed'):has-text('$5.00')")
    visit = (await w.admin.get(f"/v1/visits/{held}")).ok()
    assert (visit["booker_id"], visit["status"], visit["total_cents"]) == (visitor_id, "scheduled", 500)

    # 4. Time passes to the start (S1: media flows from the start). The kiosk signs in, checks the
    # resident in and joins; the visitor joins from My visits; both see and hear each other.
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, max(0, int((start - api.ctx.clock.now()).total_seconds())) + 1)
    kiosk = await new_page(chromium)
    await kiosk.goto(f"{base(api)}/app/kiosk.html")
    await kiosk.fill("#kiosk-id", w.kiosk_id)
    await kiosk.fill("#secret", w.kiosk_secret)
    await kiosk.click("#login button")
    await kiosk.click(f"button[data-visit='{held}']")  # "Check in and join" (S6)
    await family.reload()
    await family.click(f"a[data-join='{held}']")
    await family.wait_for_url(f"**/app/visitor.html?visit={held}")
    for page in (family, kiosk):
        await receives_video(page)
    assert (await w.admin.get(f"/v1/visits/{held}")).ok()["status"] == "in_progress"
    # The call view is being reworked by another engineer: screenshots only, no axe scan here.
    await family.screenshot(path=str(SHOTS / "journey-call-visitor-en-desktop.png"))
    await kiosk.screenshot(path=str(SHOTS / "journey-call-kiosk-en-desktop.png"))
    await kiosk.context.close()
    await family.goto(f"{base(api)}/app/visits.html")  # leaves the call

    # 5. Another visit, days ahead, cancelled with the facility's 24 hours' notice (M3a).
    second = await book_and_pay(family, "en", day_index=3, slot_index=40)  # 10:00
    await cancel_with_notice(family, second, "en")
    await check_page(family, "journey-visits-cancelled")
    await billing_shows_the_credit(family, "en")
    await check_page(family, "journey-billing")

    # 6. An attorney signs up as an attorney, asks for access and Bar verification; the admin
    # approves and verifies (V1, V2); the privileged visit says it is never recorded (P1).
    counsel = await new_page(chromium)
    lawyer, lawyer_email = "Avery Counsel", f"counsel-{uuid.uuid4().hex[:6]}@example.org"
    await sign_up(counsel, api, tmp_path, name=lawyer, email=lawyer_email, language="en", attorney=True)
    await ask_for_access(counsel, api, w, bar=True)
    await admin_approves(admin, lawyer, bar=True)
    await counsel.reload()
    await counsel.wait_for_selector(f"[data-facility='{fid}'] .bar-state .badge.verified")
    await find_resident(counsel, privileged=True)
    await pick_slot(counsel, 1, 44)  # 11:00
    assert "never recorded and never monitored" in await counsel.inner_text("#privacy")
    await counsel.click("#pay-button")  # privileged visits are free here: no card
    await counsel.wait_for_selector("#done-privacy:has-text('never recorded')")
    await check_page(counsel, "journey-book-privileged")
    privileged = str(await counsel.get_attribute("#done", "data-visit"))
    assert (await w.admin.get(f"/v1/visits/{privileged}")).ok()["visit_type"] == "privileged"
    await counsel.context.close()

    # 7. The admin changes unit A's hours to 09:00-12:00 and the 20-minute social price to $6.00
    # (A2, A3); the visitor's calendar on book.html follows.
    await admin.click("#tab-hours")
    hours = "form.hours-form[data-unit='A']"
    await admin.wait_for_selector(f"{hours} tr.window-row")
    for field, value in (("start", "09:00"), ("end", "12:00")):
        for box in await admin.query_selector_all(f"{hours} input[name={field}]"):
            await box.fill(value)
    await admin.click(f"{hours} button[type=submit]")
    await admin.wait_for_selector(f"{hours} [role=status]:has-text('saved')")
    for row in await admin.query_selector_all("tr.option-row"):
        kind = await (await row.query_selector("[name=visit_type]")).input_value()
        length = await (await row.query_selector("[name=length_minutes]")).input_value()
        if (kind, length) == ("social", "20"):
            await (await row.query_selector("[name=price]")).fill("6.00")
    await admin.click("#options-form button[type=submit]")
    await admin.wait_for_selector("#options-form [role=status]:has-text('saved')")
    await check_page(admin, "journey-admin-hours")

    await find_resident(family)
    assert "$6.00" in await family.inner_text("#length-options")
    await family.locator("#week .day:not([disabled])").nth(1).click()
    starts = [datetime.fromisoformat(str(s)).astimezone(ZONE)
              for s in await family.eval_on_selector_all("#times .slot", "b => b.map(x => x.dataset.start)")]
    assert starts and min(s.hour for s in starts) == 9
    assert max(s.hour * 60 + s.minute for s in starts) <= 11 * 60 + 40  # a 20-minute visit ends by 12:00
    await family.locator("#times .slot").first.click()
    await family.wait_for_selector("#quote-body:has-text('$6.00')")
    await check_page(family, "journey-book-new-hours")

    # 8. The visitor files a credit request for the visit held in step 4 (M6); the operator decides it.
    await family.click("nav a[href='/app/billing.html']")
    await family.wait_for_selector("#request-fields:not([hidden])")
    assert await family.input_value("#request-visit") == held
    await family.fill("#request-description", "The picture froze for most of the visit.")
    await family.click("#request-submit")
    await family.wait_for_selector("#requests li:has-text('Waiting for a decision')")
    [request] = (await w.operator.get("/v1/credit-requests")).ok()
    operator = await new_page(chromium)
    await sign_in(operator, api, w.operator.extra["email"], "/app/operator.html")
    card = f"[data-credit='{request['id']}']"
    await operator.click(f"{card} button.approve")
    await operator.wait_for_selector(f"{card} [role=status]:has-text('Approved')")
    await operator.wait_for_selector(f"{card} h3 .badge.approved:has-text('Approved')")  # not still "Waiting"
    await check_page(operator, "journey-operator-decided")
    await family.reload()
    await family.wait_for_selector(f"#requests li[data-request='{request['id']}'].approved")
    assert await family.inner_text("#balance") == "$10.00"  # the cancelled visit's $5 and this one's $5
    await check_page(family, "journey-billing-decided")
    for page in (family, admin, operator):
        assert page.errors == [], page.errors


async def test_the_visitor_journey_in_spanish(api: Api, chromium: Any, tmp_path: Path) -> None:  # noqa: F811
    """Steps 1-3 and 5 with a Spanish browser (es-US): the pages speak Spanish from the start."""
    w = await build_facility(api, name="Cárcel del Condado")
    family = await new_page(chromium, language="es")
    name, email = "Rosa Martínez", f"rosa-{uuid.uuid4().hex[:6]}@example.org"
    await sign_up(family, api, tmp_path, name=name, email=email, language="es")
    await ask_for_access(family, api, w)
    await family.wait_for_selector("h1:has-text('Centros')")
    await check_page(family, "journey-facilities-pending", language="es")

    admin = await new_page(chromium)
    await sign_in(admin, api, w.admin.extra["email"], "/app/admin.html")
    await admin_approves(admin, name)
    await admin.context.close()

    await family.reload()
    await family.wait_for_selector("#mine-list .request.approved")
    held = await book_and_pay(family, "es", day_index=1, slot_index=44)  # 11:00
    await check_page(family, "journey-book-done", language="es")
    await family.click("#done a[href='/app/visits.html']")
    await family.wait_for_selector(f"li[data-visit='{held}']:has-text('Confirmada')")
    second = await book_and_pay(family, "es", day_index=3, slot_index=40)  # 10:00
    await cancel_with_notice(family, second, "es")
    await check_page(family, "journey-visits-cancelled", language="es")
    await billing_shows_the_credit(family, "es")
    await check_page(family, "journey-billing", language="es")
    assert (await w.admin.get(f"/v1/visits/{second}")).ok()["status"] == "cancelled"
