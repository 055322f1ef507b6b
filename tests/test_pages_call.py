"""Before and during the call (issue 13), in real Chromium with fake camera and microphone: the
visitor opens the visit from My visits (/app/visitor.html?visit=...) and waits in the waiting room
(who is here, when the visit starts in facility time with the zone named, A1; "Waiting for <the
resident>"), the countdown follows the server's clock and goes down; the kiosk checks the resident
in and joins (S6); from the start (S1) both are in the call, the mute and camera toggles turn the
local tracks off (aria-pressed); at the scheduled end (S2) the view says why it ended. English and
Spanish, phone and desktop, axe on every state."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.support import PASSWORD, Api
from tests.support_booking import at, book
from tests.support_browser import check_page, chromium, new_page  # noqa: F401 (fixture)
from tests.support_facility import build_facility

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# The local audio and video tracks as the peer connection sends them (CSP: evaluate a function).
LOCAL_TRACKS = """() => {
  const out = {};
  for (const s of (window.callPc ? window.callPc.getSenders() : [])) if (s.track) out[s.track.kind] = s.track.enabled;
  return out;
}"""
DECODED = """async () => {
  let frames = 0;
  if (window.callPc) (await window.callPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') frames = r.framesDecoded || 0;
  });
  return frames;
}"""


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


def seconds(text: str) -> int:
    """'Starts in 2:57' / '19:58 left' / 'Quedan 19:58' -> seconds."""
    match = re.search(r"(\d+):(\d\d)", text)
    assert match, text
    return int(match[1]) * 60 + int(match[2])


async def until(page: Any, script: str, within: float = 15) -> Any:
    async with asyncio.timeout(within):
        while True:
            value = await page.evaluate(script)
            if value:
                return value
            await asyncio.sleep(0.2)


async def switch_language(page: Any, language: str) -> None:
    """The header's language switch (the page reloads in that language)."""
    async with page.expect_navigation():
        await page.select_option("#language", language)
    await page.wait_for_selector(f"html[lang={language}]")


async def test_waiting_room_countdown_and_toggles(api: Api, chromium: Any, loopback_only: None) -> None:  # noqa: F811
    w = await build_facility(api, options=[{"visit_type": "social", "length_minutes": 20, "price_cents": 500}],
                             residents=[("R-1", "Ana Reyes", "A")])
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1), length=20)).ok(201)
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) - 180)  # the lobby (S1)

    # Signed out, the call page asks to sign in first (its own form, the app's sign-in); without
    # ?visit= it lists the visits to join, in the facility's time (A1).
    for language, submit in (("es", "Iniciar sesión"), ("en", "Sign in")):
        page = await new_page(chromium, language=language)
        await page.goto(f"{base(api)}/app/visitor.html{'?visit=' + visit['id'] if language == 'es' else ''}")
        await page.wait_for_selector(f"html[lang={language}] #login button:has-text('{submit}')")
        await check_page(page, "call-sign-in", language=language)
        if language == "en":
            await page.fill("#email", visitor.extra["email"])
            await page.fill("#password", PASSWORD)
            await page.click("#login button[type=submit]")
            await page.wait_for_selector(f"button[data-visit='{visit['id']}']:has-text('Join')")
            assert re.search(r"Ana Reyes – .* C[SD]T \(20 min\)", await page.inner_text("#visits"))
            await check_page(page, "call-list")
        await page.context.close()

    # The visitor signs in, and joins from My visits: the waiting room, alone.
    family = await new_page(chromium)
    family.set_default_timeout(15000)
    await family.goto(f"{base(api)}/app/")
    await family.fill("#email", visitor.extra["email"])
    await family.fill("#password", PASSWORD)
    await family.click("#login button[type=submit]")
    await family.wait_for_url("**/app/visits.html*")
    await family.click(f"a[data-join='{visit['id']}']")
    await family.wait_for_url(f"**/app/visitor.html?visit={visit['id']}")
    await family.wait_for_selector("#waiting-for:has-text('Waiting for Ana Reyes to join.')")
    schedule = await family.inner_text("#waiting-schedule")
    local = start.astimezone(ZoneInfo("America/Chicago"))
    assert f"{local.hour % 12 or 12}:{local:%M}" in schedule and re.search(r"C[SD]T", schedule), schedule  # A1
    assert "facility time" in schedule
    assert "You joined at" in await family.inner_text("#present")
    assert "Ana Reyes has not joined yet." in await family.inner_text("#present")
    first = await family.inner_text("#countdown")
    assert first.startswith("Starts in") and 150 <= seconds(first) <= 180, first  # the server's clock
    await asyncio.sleep(1.5)
    assert seconds(await family.inner_text("#countdown")) < seconds(first)  # going down
    assert await family.get_attribute("#remote track", "kind") == "captions"
    await check_page(family, "call-waiting")
    await switch_language(family, "es")  # the page reloads and rejoins (S5: the same visit)
    await family.wait_for_selector("#waiting-for:has-text('Esperando a que entre Ana Reyes.')")
    assert (await family.inner_text("#countdown")).startswith("Empieza en")
    await check_page(family, "call-waiting", language="es")

    # The kiosk checks the resident in and joins (S6): the visitor is told, still before the start.
    kiosk = await new_page(chromium, language="es")
    kiosk.set_default_timeout(15000)
    await kiosk.goto(f"{base(api)}/app/kiosk.html")
    await kiosk.fill("#kiosk-id", w.kiosk_id)
    await kiosk.fill("#secret", w.kiosk_secret)
    await kiosk.click("#login button[type=submit]")
    await kiosk.click(f"button[data-visit='{visit['id']}']")
    await kiosk.wait_for_selector("#waiting-for:has-text('La persona que le visita ya está aquí.')")
    await family.wait_for_selector("#waiting-for:has-text('Ana Reyes ya está aquí.')")
    assert "Ana Reyes entró a las" in await family.inner_text("#present")
    # Touch targets on the kiosk: at least 48px.
    for selector in ("#mute", "#camera", "#leave"):
        box = await kiosk.locator(selector).bounding_box()
        assert box and box["height"] >= 48 and box["width"] >= 48, (selector, box)
    await check_page(kiosk, "call-kiosk-waiting", language="es")

    # The start (S1): both in the call, the other party's video large, the countdown in minutes left.
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    for page in (family, kiosk):
        await until(page, DECODED, within=30)
        await page.wait_for_selector("#waiting", state="hidden")
        await page.wait_for_selector("#countdown:has-text('Quedan')")
        assert 1100 <= seconds(await page.inner_text("#countdown")) <= 1200
    remote = await family.locator("#remote").bounding_box()
    own = await family.locator("#self").bounding_box()
    assert remote and own and remote["width"] > 2 * own["width"]  # the other party first and large
    await check_page(family, "call-in-call", language="es")
    await check_page(kiosk, "call-kiosk-in-call", language="es")

    # Mute and camera: aria-pressed, the local tracks off, the state said in words.
    assert await family.evaluate(LOCAL_TRACKS) == {"audio": True, "video": True}
    await family.click("#mute")
    assert await family.get_attribute("#mute", "aria-pressed") == "true"
    assert await family.evaluate(LOCAL_TRACKS) == {"audio": False, "video": True}
    await family.wait_for_selector("#media-state:has-text('Su micrófono está apagado.')")
    await family.click("#camera")
    assert await family.get_attribute("#camera", "aria-pressed") == "true"
    assert await family.evaluate(LOCAL_TRACKS) == {"audio": False, "video": False}
    await check_page(family, "call-muted", language="es")
    await family.click("#mute")
    assert await family.get_attribute("#mute", "aria-pressed") == "false"
    assert await family.evaluate(LOCAL_TRACKS) == {"audio": True, "video": False}

    # English in the call, for both (the kiosk rejoins from its list: checking in again is harmless).
    await switch_language(family, "en")
    await until(family, DECODED, within=30)
    await family.wait_for_selector("#countdown:has-text('left')")
    await check_page(family, "call-in-call")
    await switch_language(kiosk, "en")
    await kiosk.click(f"button[data-visit='{visit['id']}']")
    await until(kiosk, DECODED, within=30)
    await kiosk.wait_for_selector("#countdown:has-text('left')")
    await check_page(kiosk, "call-kiosk-in-call")

    # Leaving is not ending (S2): the other side is told, the visitor may rejoin until the end.
    await family.click("#leave")
    await family.wait_for_selector("#banner:has-text('You left the visit. You can rejoin until')")
    assert await family.is_hidden("#videos") and await family.is_hidden("#call-controls")
    await kiosk.wait_for_selector("#banner:has-text('The other party left')")
    await check_page(family, "call-left")
    await family.click("#rejoin")
    await family.wait_for_url(f"**/app/visitor.html?visit={visit['id']}")
    await until(family, DECODED, within=30)
    await family.wait_for_selector("#countdown:has-text('left')")
    before = await kiosk.evaluate(DECODED)
    await until(kiosk, f"async () => (await ({DECODED})()) > {before} + 10", within=30)  # video to the kiosk again

    # S2: the end, to the second; the view says why, and the way back.
    end = datetime.fromisoformat(visit["ends_at"])
    await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) - 1)
    for page in (family, kiosk):
        await page.wait_for_selector("#banner:has-text('The visit has ended at its scheduled end')")
        await page.wait_for_selector("#after-call:not([hidden])")
        assert await page.is_hidden("#countdown") and await page.is_hidden("#videos")
        local_end = end.astimezone(ZoneInfo("America/Chicago"))
        assert f"{local_end.hour % 12 or 12}:{local_end:%M}" in await page.inner_text("#banner")  # A1
    assert await family.is_visible("#after-call a[href='/app/visits.html']")
    await check_page(family, "call-ended")
    await check_page(kiosk, "call-kiosk-ended")
