"""The facility admin's and the operator's consoles (issue 13), driven only through the pages: the
admin approves an access request with the photo ID shown (V1), changes a unit's hours and a price
(A2, A3) and the API's availability and quote follow, imports a roster CSV with a bad row and sees
the error report, registers a kiosk and sees its secret once; the operator decides a credit
request (M6) and sees the audit chain's state. English and Spanish; axe and screenshots everywhere."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support import PASSWORD, PNG, Api, As
from tests.support_booking import at, book
from tests.support_browser import check_page, chromium, new_page  # noqa: F401 (fixture)
from tests.support_facility import build_facility
from tests.support_visits import run_visit

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def sign_in(api: Api, browser: Any, caller: As, home: str, language: str = "en") -> Any:
    page = await new_page(browser, language=language)
    await page.goto(f"{base(api)}/app/")
    await page.fill("#email", caller.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_url(f"**{home}*")
    page.set_default_timeout(10000)
    return page


async def audit_entries(api: Api, n: int) -> None:
    """Entries in the audit log, as recording views would write them (R3)."""
    from control_api.services import audit

    for i in range(n):
        async with api.ctx.sessions() as session, session.begin():
            await audit.append(session, now=api.ctx.clock.now(), action="recording.view", actor_id=f"user-{i}",
                               actor_role="investigator", detail={"file": f"visitor-{i}.webm"})


async def tamper_with_entry(api: Api, seq: int) -> None:
    from sqlalchemy import text, update

    from control_api.db.models import AuditEntry

    async with api.ctx.sessions() as session, session.begin():
        await session.execute(text("DROP TRIGGER audit_entries_no_update"))  # SQLite only (browser tests)
        await session.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(action="recording.delete"))


async def test_admin_console_approves_configures_imports_and_registers_a_kiosk(api: Api,
                                                                             chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api)
    # A pending access request with a photo ID, set up through the API (V1).
    applicant = await api.sign_up()
    (await applicant.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    request = (await applicant.post(w.path("/access-requests"))).ok(201)

    page = await sign_in(api, chromium, w.admin, "/app/admin.html")
    card = f"[data-request='{request['id']}']"
    await page.wait_for_selector(f"{card} img[src^='blob:']")
    assert await page.eval_on_selector(f"{card} img", "img => img.complete && img.naturalWidth") == 64
    await page.wait_for_selector("#count-requests:has-text('1 waiting')")
    await check_page(page, "admin-requests")
    # Denying needs a reason: the page says so before calling the API.
    await page.click(f"{card} button.danger")
    await page.wait_for_selector(f"{card} [role=alert]:has-text('Give a reason')")
    await page.click(f"{card} button.approve")
    await page.wait_for_selector(f"{card} [role=status]:has-text('Approved')")
    mine = (await applicant.get("/v1/me/access-requests")).ok()
    assert mine[0]["status"] == "approved"

    # Settings: the API's 422 shows next to its field; then a valid change saves (A5).
    await page.click("#tab-settings")
    await page.fill("#s-horizon", "0")
    await page.click("#settings-form button[type=submit]")
    await page.wait_for_selector("#err-booking_horizon_days:not([hidden])")
    assert await page.get_attribute("#s-horizon", "aria-invalid") == "true"
    await check_page(page, "admin-settings-error")
    await page.fill("#s-horizon", "20")
    await page.click("#settings-form button[type=submit]")
    await page.wait_for_selector("#settings-status:has-text('Settings saved')")
    assert (await w.admin.get(w.path())).ok()["booking_horizon_days"] == 20

    # Hours: every day 09:00-12:00 in unit A (A2); the price of a 30-minute social visit: $9.00 (A3).
    await page.click("#tab-hours")
    hours = "form.hours-form[data-unit='A']"
    await page.wait_for_selector(f"{hours} tr.window-row")
    for field, value in (("start", "09:00"), ("end", "12:00")):
        for box in await page.query_selector_all(f"{hours} input[name={field}]"):
            await box.fill(value)
    await page.click(f"{hours} button[type=submit]")
    await page.wait_for_selector(f"{hours} [role=status]:has-text('saved')")
    rows = await page.query_selector_all("tr.option-row")
    for row in rows:
        kind = await (await row.query_selector("[name=visit_type]")).input_value()
        length = await (await row.query_selector("[name=length_minutes]")).input_value()
        if (kind, length) == ("social", "30"):
            await (await row.query_selector("[name=price]")).fill("9.00")
    await page.click("#options-form button[type=submit]")
    await page.wait_for_selector("#options-form [role=status]:has-text('saved')")
    await check_page(page, "admin-hours")

    day = (api.ctx.clock.now() + timedelta(days=2)).astimezone(ZoneInfo("America/Chicago")).date().isoformat()
    slots = (await applicant.get(f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}"
                                 f"&length_minutes=30")).ok()["slots"]
    assert slots, "the new hours leave slots"
    local = [datetime.fromisoformat(s["local_start"]) for s in slots]
    assert min(x.hour for x in local) == 9 and max(x.hour * 60 + x.minute for x in local) <= 11 * 60 + 30
    quote = (await applicant.post("/v1/quotes", {"resident_id": w.resident_id, "starts_at": slots[0]["starts_at"],
                                                 "length_minutes": 30})).ok()
    assert quote["quote"]["price_cents"] == 900

    # Roster: a CSV with one bad row is refused whole, with the error report; nothing imported.
    await page.click("#tab-residents")
    await page.wait_for_selector("#residents-rows tr")
    csv = b"booking_number,full_name,housing_unit\nR-10,Ten Resident,A\nR-11,Eleven Resident,Z\n"
    await page.set_input_files("#import-file", files=[{"name": "roster.csv", "mimeType": "text/csv", "buffer": csv}])
    await page.click("#import-form button[type=submit]")
    await page.wait_for_selector("#import-report:not([hidden])")
    report = await page.inner_text("#import-rows")
    assert "3" in report and "unknown housing unit 'Z'" in report
    await check_page(page, "admin-residents-import-error")
    assert len((await w.admin.get(w.path("/residents"))).ok()) == 1
    fixed = csv.replace(b",Z\n", b",A\n")
    await page.set_input_files("#import-file", files=[{"name": "roster.csv", "mimeType": "text/csv", "buffer": fixed}])
    await page.click("#import-form button[type=submit]")
    await page.wait_for_selector("#import-form [role=status]:has-text('2 new')")
    await page.wait_for_selector("#residents-rows tr:has-text('Eleven Resident')")

    # Kiosks: the secret is shown once, works, and is gone after hiding it.
    await page.click("#tab-kiosks")
    await page.wait_for_selector("#kiosk-rows tr")
    await page.fill("#k-name", "Kiosk A-2")
    await page.click("#kiosk-form button[type=submit]")
    await page.wait_for_selector("#kiosk-secret:not([hidden])")
    kiosk_id = await page.inner_text("#kiosk-new-id")
    secret = await page.inner_text("#kiosk-new-secret")
    assert len(secret) > 20
    await page.wait_for_selector(f"#kiosk-rows tr[data-kiosk='{kiosk_id}']")
    await check_page(page, "admin-kiosk-secret")
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk_id, "secret": secret})).ok()
    await page.click("#kiosk-secret-done")
    assert await page.is_hidden("#kiosk-secret")
    await page.reload()
    await page.wait_for_selector(f"#kiosk-rows tr[data-kiosk='{kiosk_id}']")
    assert secret not in await page.content()
    # Rotating (after a confirmation) shows a new secret once; the old one stops working.
    page.once("dialog", lambda dialog: dialog.accept())
    await page.click(f"#kiosk-rows tr[data-kiosk='{kiosk_id}'] button.rotate")
    await page.wait_for_selector("#kiosk-secret:not([hidden]):has-text('For Kiosk A-2')")
    rotated = await page.inner_text("#kiosk-new-secret")
    assert rotated and rotated != secret
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk_id, "secret": secret})).problem(401)
    (await api.anonymous.post("/v1/auth/kiosk", {"kiosk_id": kiosk_id, "secret": rotated})).ok()

    # The other sections render cleanly too.
    await page.click("#tab-today")
    await page.wait_for_selector("#today-status:has-text('on')")
    await check_page(page, "admin-visits")
    await page.click("#tab-staff")
    await page.wait_for_selector("#staff-rows tr")
    await check_page(page, "admin-staff")
    assert page.errors == []


async def test_admin_console_in_spanish(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api)
    applicant = await api.sign_up()
    (await applicant.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    (await applicant.post(w.path("/access-requests"))).ok(201)
    page = await sign_in(api, chromium, w.admin, "/app/admin.html", language="es")
    await page.wait_for_selector("h1:has-text('Consola del centro')")
    await page.wait_for_selector("article.request img[src^='blob:']")
    assert await page.get_attribute("html", "lang") == "es"
    await check_page(page, "admin-requests", language="es")
    await page.click("#tab-hours")
    await page.wait_for_selector("tr.option-row")
    await page.wait_for_selector("h2:has-text('Duraciones y precios')")
    await check_page(page, "admin-hours", language="es")
    await page.click("#tab-kiosks")
    await page.fill("#k-name", "Quiosco 2")
    await page.click("#kiosk-form button[type=submit]")
    await page.wait_for_selector("#kiosk-secret:not([hidden]):has-text('una sola vez')")
    await check_page(page, "admin-kiosk-secret", language="es")


async def test_operator_decides_credit_requests_overdue_first_and_sees_the_audit_chain(api: Api,
                                                                                     chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, fees=[{"name": "Service fee", "kind": "fee", "amount_cents": 100}])
    visitor = await w.approved_visitor(api)
    # Two visits that went wrong, each with a credit request (M6), set up through the API; the
    # first is left until it is overdue.
    first = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    second = (await book(visitor, w.resident_id, at(api, days=1, hours=2))).ok(201)
    await run_visit(api, first, end={"reason": "completed"}, connected_seconds=120)
    old = (await visitor.post("/v1/credit-requests", {"visit_id": first["id"], "description": "video froze"})).ok(201)
    await api.advance(w.operator, 73 * 3600)
    await run_visit(api, second, end={"reason": "completed"}, connected_seconds=60)
    new = (await visitor.post("/v1/credit-requests", {"visit_id": second["id"], "description": "no sound"})).ok(201)
    balance = (await visitor.get("/v1/me/balance")).ok()

    page = await sign_in(api, chromium, w.operator, "/app/operator.html")
    await page.wait_for_selector(f"[data-credit='{new['id']}']")
    order = await page.eval_on_selector_all("[data-credit]", "cards => cards.map(c => c.dataset.credit)")
    assert order == [old["id"], new["id"]], "overdue first (M6)"
    await page.wait_for_selector("#count-overdue:has-text('1 overdue')")
    await check_page(page, "operator-credits")
    card = f"[data-credit='{old['id']}']"
    await page.click(f"{card} button.danger")  # denying needs a note
    await page.wait_for_selector(f"{card} [role=alert]:has-text('Say why')")
    await page.click(f"{card} button.approve")
    await page.wait_for_selector(f"{card} [role=status]:has-text('Approved')")
    done = next(r for r in (await w.operator.get("/v1/credit-requests")).ok() if r["id"] == old["id"])
    assert done["status"] == "approved"
    after = (await visitor.get("/v1/me/balance")).ok()
    assert after["available_cents"] - balance["available_cents"] == first["price_cents"]

    await page.click("#tab-facilities")
    await page.wait_for_selector("#facility-rows tr")
    await check_page(page, "operator-facilities")
    await page.click("#tab-fees")
    await page.wait_for_selector("tr.fee-row input[name=name]")
    await check_page(page, "operator-fees")
    await page.click("#tab-visits")
    await page.wait_for_selector("#visits-status:has-text('No visits')")  # the demo clock's today
    day = datetime.fromisoformat(first["starts_at"]).astimezone(ZoneInfo("America/Chicago")).date().isoformat()
    await page.fill("#visits-day", day)
    await page.click("#visits-form button[type=submit]")
    await page.wait_for_selector(f"#visit-rows tr[data-visit='{first['id']}']")
    await check_page(page, "operator-visits")
    await audit_entries(api, 3)
    await page.click("#tab-audit")
    await page.wait_for_selector("#audit-verdict:has-text('All 3 entries')")
    await check_page(page, "operator-audit")
    await tamper_with_entry(api, 2)  # as a DBA could: the next check shows the break
    await page.click("#audit-check")
    await page.wait_for_selector("#audit-verdict:has-text('Broken')")
    assert "2" in await page.inner_text("#audit-state")
    await check_page(page, "operator-audit-broken")
    assert page.errors == []

    # In Spanish: the credit requests and the audit chain.
    page = await sign_in(api, chromium, w.operator, "/app/operator.html", language="es")
    await page.wait_for_selector("h1:has-text('Consola del operador')")
    await page.wait_for_selector(f"[data-credit='{new['id']}']")
    await check_page(page, "operator-credits", language="es")
    await page.click("#tab-audit")
    await page.wait_for_selector("#audit-verdict:has-text('Rota')")
    await check_page(page, "operator-audit", language="es")
