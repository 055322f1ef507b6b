"""End to end in real browsers: two headless Chromium instances (fake camera and microphone) as
the visitor and the kiosk, through the real API, pages and embedded SFU. Each decodes the
other's 640x480 video and receives audio; the warnings arrive; the visit ends at its scheduled
end (test clock), and the control plane records it completed.

Chromium comes from Debian (`apt-get install chromium`); Playwright drives it, never downloading
a browser of its own. Under CI=true a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import PASSWORD, Api
from tests.support_booking import at, book
from tests.support_browser import CHROMIUM, FLAGS, HAVE_CHROMIUM
from tests.support_facility import build_facility

INBOUND = """async () => {
  if (!window.callPc) return null;
  const out = {video: null, audio: null};
  (await window.callPc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video')
      out.video = {frames: r.framesDecoded || 0, width: r.frameWidth, height: r.frameHeight};
    if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audio = {bytes: r.bytesReceived || 0};
  });
  return out;
}"""


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[list[Any]]:
    if not HAVE_CHROMIUM:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = []
        for n in range(2):
            launched.append(await p.chromium.launch_persistent_context(
                str(tmp_path / f"profile-{n}"), executable_path=CHROMIUM, headless=True, args=FLAGS))
        try:
            yield launched
        finally:
            for context in launched:
                await context.close()


async def _wait_for_video(page: Any, min_frames: int = 15, within: float = 20,
                          size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Until the page decodes video (and, with `size`, at that size: Chrome may start smaller
    and scale up as its bandwidth estimate grows) and receives audio."""
    async with asyncio.timeout(within):
        while True:
            stats = await page.evaluate(INBOUND)
            if stats and stats["video"] and stats["video"]["frames"] >= min_frames and stats["audio"] \
                    and stats["audio"]["bytes"] > 0 \
                    and (size is None or (stats["video"]["width"], stats["video"]["height"]) == size):
                return stats
            await asyncio.sleep(0.25)


async def _wait_state(page: Any, expression: str, within: float = 15) -> Any:
    async with asyncio.timeout(within):
        while True:
            value = await page.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.2)


async def _open_pages(api: Api, browsers: list[Any], w: Any, visitor: Any,
                      visit: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    """The visitor signs in and joins; the kiosk signs in, checks the resident in and joins."""
    base = f"http://{api.client.server.host}:{api.client.server.port}"

    family = await browsers[0].new_page()
    errors: list[str] = []
    family.on("pageerror", lambda e: errors.append(str(e)))
    await family.goto(f"{base}/app/visitor.html")
    await family.fill("#email", visitor.extra["email"])
    await family.fill("#password", PASSWORD)
    await family.click("#login button")
    await family.click(f"button[data-visit='{visit['id']}']")

    kiosk = await browsers[1].new_page()
    await kiosk.goto(f"{base}/app/kiosk.html")
    await kiosk.fill("#kiosk-id", w.kiosk_id)
    await kiosk.fill("#secret", w.kiosk_secret)
    await kiosk.click("#login button")
    await kiosk.click(f"button[data-visit='{visit['id']}']")

    return family, kiosk, errors


async def _live_visit_in_browsers(api: Api, browsers: list[Any]) -> tuple[Any, Any, dict[str, Any],
                                                                           tuple[Any, Any, list[str]]]:
    """A 20-minute social visit that has just started, with both pages joined."""
    w = await build_facility(api, options=[{"visit_type": "social", "length_minutes": 20, "price_cents": 500}])
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1), length=20)).ok(201)
    start = datetime.fromisoformat(visit["starts_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    return w, visitor, visit, await _open_pages(api, browsers, w, visitor, visit)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_two_browsers_hold_a_visit_that_warns_and_ends_on_time(api: Api, browsers: list[Any],
                                                                     loopback_only: None) -> None:
    w = await build_facility(api, options=[{"visit_type": "social", "length_minutes": 20, "price_cents": 500}])
    visitor = await w.approved_visitor(api)
    visit = (await book(visitor, w.resident_id, at(api, days=1), length=20)).ok(201)
    start, end = datetime.fromisoformat(visit["starts_at"]), datetime.fromisoformat(visit["ends_at"])
    await api.advance(w.operator, int((start - api.ctx.clock.now()).total_seconds()) + 1)
    family, kiosk, errors = await _open_pages(api, browsers, w, visitor, visit)

    for page in (family, kiosk):
        stats = await _wait_for_video(page, size=(640, 480), within=30)
        assert (stats["video"]["width"], stats["video"]["height"]) == (640, 480)
    before = (await family.evaluate(INBOUND))["video"]["frames"]
    await asyncio.sleep(1)
    assert (await family.evaluate(INBOUND))["video"]["frames"] > before  # still decoding

    # S3: warnings at 2 minutes and 30 seconds left (the SFU follows the control plane's test clock).
    await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) - 119)
    warnings = await _wait_state(family, "window.callState.warnings.length >= 1 && window.callState.warnings")
    assert 100 <= warnings[0] <= 120
    await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) - 29)
    await _wait_state(kiosk, "window.callState.warnings.some(s => s <= 30)")
    # S2: the end, for both, with the reason shown.
    await api.advance(w.operator, int((end - api.ctx.clock.now()).total_seconds()) - 2)
    for page in (family, kiosk):
        ended = await _wait_state(page, "window.callState.ended", within=10)
        assert ended["reason"] == "completed"
        assert "ended" in (await page.text_content("#banner") or "")
    for _ in range(50):
        status = (await visitor.get(f"/v1/visits/{visit['id']}")).ok()["status"]
        if status == "completed":
            break
        await asyncio.sleep(0.1)
    assert status == "completed"
    assert errors == []


MONITOR_DECODES_BOTH = """(async () => {
  const state = window.monitorState[VISIT];
  if (!state || state.status !== 'watching') return false;
  const videos = [];
  (await state.pc.getStats()).forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') videos.push(r.framesDecoded || 0);
  });
  return videos.length === 2 && Math.min(...videos) >= 5;
})()"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_officer_watches_from_the_console_then_disconnects_with_a_reason(api: Api, browsers: list[Any],
                                                                                  loopback_only: None) -> None:
    """The officer console in a third page: the live visit is listed, Watch shows both parties'
    video (decoded), the parties are not told, and Disconnect ends both pages' visit with the reason."""
    w, _visitor, visit, (family, kiosk, errors) = await _live_visit_in_browsers(api, browsers)
    for page in (family, kiosk):
        await _wait_for_video(page)

    console = await browsers[1].new_page()
    console.on("pageerror", lambda e: errors.append(str(e)))
    console.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await console.goto(f"http://{api.client.server.host}:{api.client.server.port}/app/officer.html")
    await console.fill("#email", w.officer.extra["email"])
    await console.fill("#password", PASSWORD)
    await console.click("#login button")
    watch = console.locator(f"div.visit[data-visit='{visit['id']}'] button.watch")
    await watch.wait_for()
    row = f"div.visit[data-visit='{visit['id']}']"
    await _wait_state(console, f"!document.querySelector(\"{row} button.watch\").disabled")
    await watch.click()
    await _wait_state(console, MONITOR_DECODES_BOTH.replace("VISIT", repr(visit["id"])))  # both parties' video
    assert await family.evaluate("window.callState.status") == "in_call"  # nothing told the parties

    await console.select_option(f"div.visit[data-visit='{visit['id']}'] select", "facility")
    await console.click(f"div.visit[data-visit='{visit['id']}'] button.disconnect")
    for page in (family, kiosk):
        ended = await _wait_state(page, "window.callState.ended", within=10)
        assert (ended["reason"], ended["disconnect_reason"]) == ("disconnected", "facility")
        assert "disconnected by the facility (facility)" in (await page.text_content("#banner") or "")
    await _wait_state(console, f"!window.monitorState['{visit['id']}']", within=10)
    assert "Disconnected (facility)" in (await console.text_content(f"figure[data-visit='{visit['id']}']") or "")
    assert errors == []


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_recorded_browser_visit_plays_in_the_review_page_and_its_export_verifies(
        api: Api, browsers: list[Any], loopback_only: None, tmp_path: Path) -> None:
    """R1-R3 in real browsers: two Chromium peers hold a visit, the SFU records it; an investigator's
    review page plays both parties' files in sync (the video elements report playback progress),
    flags a moment, and the exported archive verifies with `openvisit export verify`."""
    import sys

    from openvisit.keys import public_pem

    w, _visitor, visit, (family, kiosk, errors) = await _live_visit_in_browsers(api, browsers)
    for page in (family, kiosk):
        await _wait_for_video(page, min_frames=60)  # a few seconds of conversation
    await asyncio.sleep(2)
    (await w.officer.post(f"/v1/visits/{visit['id']}/disconnect", {"reason": "technical"})).ok()
    for _ in range(80):  # the recorder closes the files and the control plane signs the manifest
        if (await w.investigator.get(w.path("/recordings"))).ok():
            break
        await asyncio.sleep(0.25)

    review = await browsers[1].new_page()
    review.on("pageerror", lambda e: errors.append(str(e)))
    await review.goto(f"http://{api.client.server.host}:{api.client.server.port}/app/review.html")
    await review.fill("#email", w.investigator.extra["email"])
    await review.fill("#password", PASSWORD)
    await review.click("#login button")
    await review.click(f"button[data-visit='{visit['id']}']")
    await _wait_state(review, "window.reviewState.status === 'ready'")
    await review.click("#play")
    progress = await _wait_state(review, """(() => {
        const v = [document.getElementById('visitor'), document.getElementById('resident')];
        return v.every(x => !x.paused && x.currentTime > 1.5 && x.videoWidth === 640) && v.map(x => x.currentTime);
    })()""", within=20)
    assert abs(progress[0] - progress[1]) < 0.5  # both parties in sync
    shots = Path(os.environ.get("OPENVISIT_SCREENSHOTS", tmp_path))
    await review.screenshot(path=str(shots / "review-1280.png"), full_page=True)
    await review.fill("#note", "hands something to the camera")
    await review.click("#flag-form button")
    await _wait_state(review, "document.querySelectorAll('#flags li').length === 1")
    await review.click("#flags li button")  # a flag seeks both players to its moment
    await review.click("#export")
    await _wait_state(review, "window.reviewState.exported === true")

    exported = await w.investigator.request("POST", f"/v1/recordings/{visit['id']}/export")
    archive, key = tmp_path / "visit.zip", tmp_path / "server.pem"
    archive.write_bytes(exported.body)
    key.write_text(public_pem(api.ctx.join_tokens.public_key))
    verify = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "openvisit.cli", "export", "verify", str(archive), "--public-key", str(key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(verify.communicate(), 60)
    assert verify.returncode == 0, err.decode()
    assert "2 files match the signed manifest" in out.decode()
    assert errors == []
