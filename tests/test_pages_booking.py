"""Booking, my visits and billing in the browser (issue 13), through pages only: a visitor with
approved access (V1) books and pays on book.html (a declined card first, rule B6/M1), sees the visit
on visits.html, books a second one and cancels it with notice after being told the credit (M3/M4),
sees the credit, its expiry (M5) and the statement line (M9) on billing.html and downloads the CSV;
a verified attorney books a privileged visit that says it is never recorded (P1, V2); a shorter
run in Spanish. Every page and state: screenshots at both sizes and an axe scan."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.support import PASSWORD, Api, As
from tests.support_browser import check_page, chromium, new_page  # noqa: F401 (fixture)
from tests.support_facility import build_facility

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
FEES = [{"name": "Service fee", "kind": "fee", "amount_cents": 100},
        {"name": "State tax", "kind": "tax", "rate_basis_points": 1000}]


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def sign_in(api: Api, browser: Any, who: As, language: str = "en") -> Any:
    page = await new_page(browser, language=language)
    await page.goto(f"{base(api)}/app/")
    await page.fill("#email", who.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_url("**/app/visits.html")
    return page


async def find_resident(page: Any, number: str = "R-1") -> None:
    await page.click("nav a[href='/app/book.html']")
    await page.wait_for_selector("#find:not([hidden])")
    await page.fill("#booking-number", number)
    await page.click("#find button[type=submit]")
    await page.wait_for_selector("#times .slot")


async def pick_slot(page: Any, day_index: int = 1, slot_index: int = 40) -> str:
    """A slot on the `day_index`-th day that has times, its `slot_index`-th time (or the last)."""
    days = page.locator("#week .day:not([disabled])")
    await days.nth(day_index).click()
    slots = page.locator("#times .slot")
    count = await slots.count()
    slot = slots.nth(min(slot_index, count - 1))
    start = str(await slot.get_attribute("data-start"))
    await slot.click()
    await page.wait_for_selector("#quote-body:not([hidden])")
    return start


async def pay(page: Any, number: str) -> None:
    await page.fill("#card-number", number)
    await page.fill("#card-expiry", "12/39")
    await page.fill("#card-cvc", "123")
    await page.click("#pay-button")


async def visits_of(who: As) -> list[dict[str, Any]]:
    return list((await who.get("/v1/visits?limit=500")).ok())


async def test_visitor_books_pays_cancels_with_notice_and_reads_billing(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, fees=FEES, visitor=True, cancellation_notice_hours=24)
    assert w.visitor is not None
    page = await sign_in(api, chromium, w.visitor)
    await page.wait_for_selector("#upcoming-empty:not([hidden])")
    await check_page(page, "visits-empty")

    # book.html: the week calendar names the facility's zone (A1); each length has its price (A3)
    await find_resident(page)
    assert "Central" in await page.inner_text("#zone-line") and "America/Chicago" in await page.inner_text("#zone-line")
    assert "$5.00" in await page.inner_text("#length-options") and "$7.50" in await page.inner_text("#length-options")
    await check_page(page, "book-slots")
    await pick_slot(page, day_index=1)
    quote = await page.inner_text("#quote-body")
    for item in ("Social visit, 20 minutes", "$5.00", "Service fee", "$1.00", "State tax", "$0.50", "$6.50"):
        assert item in quote, item  # B6: every fee and tax itemised
    assert "recorded" in await page.inner_text("#privacy")  # B6: told before paying
    await check_page(page, "book-quote")

    # the card form checks the fields, then a declined test card books and charges nothing (B6)
    await page.fill("#card-number", "4242 4242 4242 4241")
    await page.click("#pay-button")
    await page.wait_for_selector("#card-number-error:has-text('not valid')")
    await page.fill("#card-number", "4242424242424242")
    assert await page.input_value("#card-number") == "4242 4242 4242 4242"
    await page.fill("#card-expiry", "01/20")
    await page.click("#pay-button")
    await page.wait_for_selector("#card-expiry-error:has-text('expired')")
    await pay(page, "4000 0000 0000 0002")
    await page.wait_for_selector("#pay-error:has-text('declined')")
    assert await visits_of(w.visitor) == []
    await check_page(page, "book-declined")
    await pay(page, "4242 4242 4242 4242")
    await page.wait_for_selector("#done:not([hidden])")
    done = await page.inner_text("#done")
    assert "$6.50" in done and "Visa ending in 4242" in done and "recorded" in done
    await check_page(page, "book-done")
    first = str(await page.get_attribute("#done", "data-visit"))

    await page.click("#done a[href='/app/visits.html']")
    await page.wait_for_selector(f"li[data-visit='{first}']")
    card = await page.inner_text(f"li[data-visit='{first}']")
    assert "Resident One" in card and "Confirmed" in card and "$6.50" in card and ("CST" in card or "CDT" in card)
    await check_page(page, "visits-upcoming")

    # a second booking, days ahead, cancelled with notice: the credit is explained BEFORE confirming (M3a)
    await find_resident(page)
    await pick_slot(page, day_index=3, slot_index=44)
    await pay(page, "5555 5555 5555 4444")
    await page.wait_for_selector("#done:not([hidden])")
    second = str(await page.get_attribute("#done", "data-visit"))
    await page.click("#done a[href='/app/visits.html']")
    await page.click(f"button[data-cancel='{second}']")
    await page.wait_for_selector("#cancel-credit:not([hidden])")
    explained = await page.inner_text("#cancel-credit")
    assert "You will get $5.00 in credit" in explained and "24 hours" in explained and "$1.50" in explained
    await check_page(page, "visits-cancel-dialog")
    await page.click("#cancel-confirm")
    await page.wait_for_selector("#cancel-error:has-text('why')")  # a reason is required
    await page.fill("#cancel-reason", "A family emergency")
    await page.click("#cancel-confirm")
    await page.wait_for_selector("#notice:has-text('$5.00 in credit')")
    await page.wait_for_selector(f"#past li[data-visit='{second}']:has-text('Cancelled')")
    assert (await w.visitor.get(f"/v1/visits/{second}")).ok()["status"] == "cancelled"
    await check_page(page, "visits-cancelled")

    # billing.html: the balance, the lot with its expiry (M5), the statement lines (M9) and the CSV
    await page.click("nav a[href='/app/billing.html']")
    await page.wait_for_selector("#balance-section:not([hidden])")
    assert await page.inner_text("#balance") == "$5.00"
    lots = await page.inner_text("#lots tbody")
    assert "You cancelled with enough notice" in lots and "$5.00" in lots
    statement = await page.inner_text("#statement tbody")
    assert "Credit added" in statement and "M3a" in statement and "+$5.00" in statement and "−$6.50" in statement
    assert await page.locator("#statement tbody tr").count() == 3
    await check_page(page, "billing")
    async with page.expect_download() as download_info:
        await page.click("#download")
    download = await download_info.value
    path = await download.path()
    text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["kind"], r["rule"], r["amount_usd"], r["card_usd"]) for r in rows] == [
        ("visit_payment", "B6", "-6.50", "6.50"), ("visit_payment", "B6", "-6.50", "6.50"),
        ("credit_issued", "M3a", "5.00", "0.00")]
    assert rows[2]["visit_id"] == second and rows[2]["resident"] == "Resident One"
    assert download.suggested_filename.endswith(".csv")
    assert page.errors == [], page.errors

    # M6: once a visit's start has passed, a credit request with its status and decision deadline
    await api.advance(w.operator, 2 * 86400)
    await page.reload()
    await page.wait_for_selector("#request-fields:not([hidden])")
    assert await page.locator("#request-visit option").count() == 1  # the cancelled visit is not offered
    await page.fill("#request-description", "The video froze after two minutes.")
    await page.click("#request-submit")
    await page.wait_for_selector("#request-done:has-text('answer by')")
    await page.wait_for_selector("#requests li:has-text('Waiting for a decision'):has-text('Decision due by')")
    [request] = (await w.visitor.get("/v1/credit-requests")).ok()
    assert request["visit_id"] == first and request["status"] == "open"
    await check_page(page, "billing-credit-request")


async def test_verified_attorney_books_a_privileged_visit_never_recorded(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, attorney=True)
    assert w.attorney is not None
    page = await sign_in(api, chromium, w.attorney)
    await page.click("nav a[href='/app/book.html']")
    await page.wait_for_selector("#type-help:has-text('verified your Bar number')")  # V2
    await page.check("#type-privileged")
    await page.fill("#booking-number", "R-1")
    await page.click("#find button[type=submit]")
    await page.wait_for_selector("#times .slot")
    assert "Privileged attorney visit" in await page.inner_text("#resident-line")
    await pick_slot(page, day_index=1)
    assert "never recorded and never monitored" in await page.inner_text("#privacy")  # P1, B6
    assert await page.is_hidden("#card-fields") and "free of charge" in await page.inner_text("#no-card")
    await check_page(page, "book-privileged-quote")
    await page.click("#pay-button")
    await page.wait_for_selector("#done:not([hidden])")
    assert "never recorded" in await page.inner_text("#done-privacy")
    await check_page(page, "book-privileged-done")
    [visit] = await visits_of(w.attorney)
    assert visit["visit_type"] == "privileged" and visit["status"] == "scheduled"
    await page.click("#done a[href='/app/visits.html']")
    await page.wait_for_selector(f"li[data-visit='{visit['id']}']:has-text('Never recorded')")
    # the call page takes ?visit= with the app's sign-in (Join on My visits links there); joining opens at S1
    await page.goto(f"{base(api)}/app/visitor.html?visit={visit['id']}")
    await page.wait_for_selector("#banner:has-text('joining opens')")
    assert await page.is_hidden("#login")


async def test_spanish_booking_and_my_visits(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, fees=FEES, visitor=True, cancellation_notice_hours=72)
    assert w.visitor is not None
    page = await sign_in(api, chromium, w.visitor, language="es")
    await page.select_option("#language", "es")  # remembered on the account
    await page.wait_for_selector("h1:has-text('Mis visitas')")
    await page.wait_for_selector("#upcoming-empty:not([hidden])")
    await check_page(page, "visits-empty", language="es")
    await page.click("nav a[href='/app/book.html']")
    await page.wait_for_selector("h1:has-text('Reservar una visita')")
    await page.fill("#booking-number", "R-1")
    await page.click("#find button[type=submit]")
    await page.wait_for_selector("#times .slot")
    assert "hora local del centro" in await page.inner_text("#zone-line")
    await check_page(page, "book-slots", language="es")
    await pick_slot(page, day_index=1)
    assert "Se graba" in await page.inner_text("#privacy")
    await check_page(page, "book-quote", language="es")
    await pay(page, "4000 0000 0000 9995")
    await page.wait_for_selector("#pay-error:has-text('fondos suficientes')")
    await check_page(page, "book-declined", language="es")
    await pay(page, "4242 4242 4242 4242")
    await page.wait_for_selector("#done:has-text('Su visita está reservada')")
    await check_page(page, "book-done", language="es")
    visit = str(await page.get_attribute("#done", "data-visit"))
    await page.click("#done a[href='/app/visits.html']")
    await page.wait_for_selector(f"li[data-visit='{visit}']:has-text('Confirmada')")
    await check_page(page, "visits-upcoming", language="es")
    # less than the facility's 72 hours' notice: told there is no credit, before confirming (M3a, A6)
    await page.click(f"button[data-cancel='{visit}']")
    await page.wait_for_selector("#cancel-credit:has-text('No recibirá crédito')")
    assert "72 horas" in await page.inner_text("#cancel-credit")
    await check_page(page, "visits-cancel-dialog", language="es")
    await page.click("#cancel-keep")
    assert (await w.visitor.get(f"/v1/visits/{visit}")).ok()["status"] == "scheduled"
    await page.click("nav a[href='/app/billing.html']")
    await page.wait_for_selector("h1:has-text('Pagos y crédito')")
    await page.wait_for_selector("#statement-section:not([hidden])")
    await check_page(page, "billing", language="es")
