"""Moving a visit on "My visits" (issue 13), through the page: each upcoming visit the booker may
still move has a Move button (a visit inside the facility's notice says it is too late, before
anyone tries: A6, M3a); the dialog names the deadline and the facility's zone (A1), lists the free
times for the same length (B2-B5), confirms, and the page shows the new time; the kiosk is told
(B7). When moving is refused (access withdrawn, V1) the dialog says why. English and Spanish;
every state: screenshots at both sizes and an axe scan."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update

from control_api.db.models import AccessRequest
from tests.support import Api, As
from tests.support_booking import at, book
from tests.support_browser import check_page, chromium  # noqa: F401 (fixture)
from tests.support_facility import build_facility
from tests.test_pages_booking import sign_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


async def move_on_page(page: Any, visit_id: str, *, language: str, notice_hours: int) -> str:
    """Open the Move dialog; a time on the first day with times is inside the notice and the page
    warns (no later move, no credit: A6, M3a); then a time on the fourth day, confirmed. Returns
    the new start."""
    await page.click(f"button[data-move='{visit_id}']")
    await page.wait_for_selector("#move-times .slot")
    await check_page(page, "visits-move-dialog", language=language)
    days = page.locator("#move-week .day:not([disabled])")
    await page.locator("#move-times .slot").first.click()
    await page.wait_for_selector("#move-short:not([hidden])")
    assert str(notice_hours) in await page.inner_text("#move-short")
    await check_page(page, "visits-move-short", language=language)
    await days.nth(3).click()
    assert await page.is_hidden("#move-short") and await page.is_disabled("#move-confirm")
    slot = page.locator("#move-times .slot").nth(4)
    start = str(await slot.get_attribute("data-start"))
    await slot.click()
    await page.wait_for_selector("#move-chosen:not([hidden])")
    assert await page.get_attribute("#move-times .slot[aria-pressed=true]", "data-start") == start
    assert await page.is_hidden("#move-short")
    await check_page(page, "visits-move-chosen", language=language)
    await page.click("#move-confirm")
    return start


async def booked(w_visitor: As, resident_id: str, *, days: float, hours: float = 0) -> str:
    return str((await book(w_visitor, resident_id, at(w_visitor.api, days=days, hours=hours))).ok(201)["id"])


async def test_a_visitor_moves_a_visit_on_my_visits(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, cancellation_notice_hours=24, visitor=True)
    assert w.visitor is not None and w.visitor.principal_id is not None
    movable = await booked(w.visitor, w.resident_id, days=3)
    late = await booked(w.visitor, w.resident_id, days=0, hours=3)  # inside the 24 hours' notice
    other = await booked(w.visitor, w.resident_id, days=6)
    page = await sign_in(api, chromium, w.visitor)
    await page.wait_for_selector(f"li[data-visit='{movable}'] button[data-move]")
    # too late to move: said on the card, before anyone tries (A6, M3a); cancelling stays possible
    closed = await page.inner_text(f"[data-move-closed='{late}']")
    assert "Too late to move" in closed and "24 hours" in closed
    assert await page.locator(f"button[data-move='{late}']").count() == 0
    assert await page.locator(f"button[data-cancel='{late}']").count() == 1
    await check_page(page, "visits-move-list")

    await page.click(f"button[data-move='{movable}']")
    await page.wait_for_selector("#move-picker:not([hidden])")
    assert "You can move this visit until" in await page.inner_text("#move-deadline")
    zone = await page.inner_text("#move-zone")
    assert "Central" in zone and "America/Chicago" in zone  # A1: the facility's zone, named
    await page.click("#move-keep")
    start = await move_on_page(page, movable, language="en", notice_hours=24)
    await page.wait_for_selector("#notice:has-text('is moved to')")
    assert "Resident One" in await page.inner_text("#notice")
    visit = (await w.visitor.get(f"/v1/visits/{movable}")).ok()
    assert utc(visit["starts_at"]) == utc(start) and visit["status"] == "scheduled"
    card = await page.inner_text(f"li[data-visit='{movable}']")
    assert "Confirmed" in card and ("CST" in card or "CDT" in card)
    notes = (await w.kiosk.get("/v1/kiosk/notifications")).ok()
    assert [n["kind"] for n in notes].count("moved") == 1  # B7
    await check_page(page, "visits-moved")

    # access withdrawn (V1; set directly, there is no revoke route): the dialog says why, no times
    async with api.ctx.sessions() as s, s.begin():
        await s.execute(update(AccessRequest).where(AccessRequest.visitor_id == w.visitor.principal_id)
                        .values(status="denied"))
    await page.click(f"button[data-move='{other}']")
    await page.wait_for_selector("#move-answer:not([hidden])")
    assert "no longer" in await page.inner_text("#move-answer")
    assert await page.is_hidden("#move-picker") and await page.is_hidden("#move-confirm")
    await check_page(page, "visits-move-refused")


async def test_the_same_move_in_spanish(api: Api, chromium: Any) -> None:  # noqa: F811
    w = await build_facility(api, cancellation_notice_hours=48, visitor=True)
    assert w.visitor is not None
    movable = await booked(w.visitor, w.resident_id, days=4)
    late = await booked(w.visitor, w.resident_id, days=1)
    page = await sign_in(api, chromium, w.visitor, language="es")
    await page.select_option("#language", "es")
    await page.wait_for_selector("h1:has-text('Mis visitas')")
    await page.wait_for_selector(f"li[data-visit='{movable}'] button[data-move]:has-text('Cambiar la hora')")
    closed = await page.inner_text(f"[data-move-closed='{late}']")
    assert "Ya no se puede cambiar la hora" in closed and "48 horas" in closed
    await check_page(page, "visits-move-list", language="es")
    start = await move_on_page(page, movable, language="es", notice_hours=48)
    await page.wait_for_selector("#notice:has-text('ahora es el')")
    visit = (await w.visitor.get(f"/v1/visits/{movable}")).ok()
    assert utc(visit["starts_at"]) == utc(start)
    await check_page(page, "visits-moved", language="es")
