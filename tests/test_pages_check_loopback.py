"""The device check page's test call (issue 13) in headless Chromium with its fake camera and
microphone: signed in, "Test my connection" sends the picture and sound to the embedded media
server and shows them as they come back, with measured numbers from getStats() (round trip,
loss, frame rate, bitrate) and a verdict; signed out, the page says to sign in; English and
Spanish, screenshots and axe."""

from __future__ import annotations

from typing import Any

import pytest

from control_api.auth import Role
from tests.support import PASSWORD, Api, As
from tests.support_browser import check_page, chromium, new_page  # noqa: F401 (fixture)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def sign_in(api: Api, browser: Any, who: As, language: str) -> Any:
    page = await new_page(browser, language=language)
    await page.goto(f"{base(api)}/app/")
    await page.fill("#email", who.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_url("**/app/visits.html")
    return page


async def test_the_test_call_shows_my_video_back_with_numbers_and_a_verdict(
        api: Api, chromium: Any, loopback_only: None) -> None:  # noqa: F811
    for language, verdict in (("en", "Good: your connection is ready for a video visit."),
                              ("es", "Buena: su conexión está lista para una visita por video.")):
        visitor = await api.create_user(Role.VISITOR)
        page = await sign_in(api, chromium, visitor, language)
        # Reachable from the visitor's pages (the call view links it too: test_pages_platform.py).
        await page.click("nav a[href='/app/check.html']")
        await page.wait_for_selector("#net-status[data-state=ok]")
        assert await page.is_hidden("#loop-signin")
        await page.click("#loop-start")
        await page.wait_for_selector("#loop-status[data-state=working]")
        # Its own picture, back from the server, plays in the test call's video.
        await page.wait_for_selector("#loop-fps[data-value]", timeout=15000)
        # The picture that came back was decoded and is shown.
        assert await page.eval_on_selector("#loop-video", "v => v.videoWidth") > 0
        await check_page(page, "check-loopback-running", language=language)
        await page.wait_for_selector("#loop-verdict:not([hidden])", timeout=30000)
        numbers = {name: float(await page.get_attribute(f"#loop-{name}", "data-value") or "nan")
                   for name in ("rtt", "loss", "fps", "bitrate")}
        assert 0 <= numbers["rtt"] < 300 and 0 <= numbers["loss"] < 3, numbers  # loopback: fast, lossless
        assert numbers["fps"] > 0 and numbers["bitrate"] > 0, numbers
        # The verdict follows the numbers (a loaded machine may encode fewer frames: weak, with why).
        good = numbers["fps"] >= 15 and numbers["bitrate"] >= 150
        text = await page.inner_text("#loop-verdict")
        expected = "good" if good else "weak"
        assert await page.get_attribute("#loop-verdict", "data-verdict") == expected, (numbers, text)
        assert (verdict in text) is good, text
        assert await page.is_hidden("#loop-figure")  # the call is over: no black box left behind
        assert await page.is_visible("#loop-start:has-text('%s')" % ("Test again" if language == "en"
                                                                     else "Probar otra vez"))
        assert not api.ctx.media.device_checks.sessions  # type: ignore[union-attr]  # ended, socket closed
        await check_page(page, "check-loopback-done", language=language)
        await page.context.close()


async def test_signed_out_the_page_asks_to_sign_in_for_the_test_call(api: Api, chromium: Any) -> None:  # noqa: F811
    for language, words in (("en", "Sign in to test the connection to the video server."),
                            ("es", "Inicie sesión para probar la conexión con el servidor de video.")):
        page = await new_page(chromium, language=language)
        await page.goto(f"{base(api)}/app/check.html")
        await page.wait_for_selector(f"#loop-signin:not([hidden]):has-text('{words}')")
        assert await page.is_disabled("#loop-start")
        href = await page.get_attribute("#loop-signin-link", "href")
        assert href == "/app/?next=%2Fapp%2Fcheck.html"
        await check_page(page, "check-loopback-signed-out", language=language)
        await page.context.close()
