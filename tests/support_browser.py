"""Browser test support (issue 13): headless Debian Chromium through Playwright, screenshots of
every page at a desktop and a phone size, and axe-core scans (axe-playwright-python).

Screenshots go to $OPENVISIT_SCREENSHOTS (default /tmp/openvisit-screenshots), named
`<page>-<language>-<desktop|phone>.png`, for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection"]
SHOTS = Path(os.environ.get("OPENVISIT_SCREENSHOTS", "/tmp/openvisit-screenshots"))
SHOTS.mkdir(parents=True, exist_ok=True)
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """One headless Chromium for the test; in CI a missing browser fails instead of skipping."""
    if not HAVE_CHROMIUM:
        message = "Chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(browser: Any, *, viewport: dict[str, int] = DESKTOP, language: str = "en") -> Any:
    """A page in a fresh context with the browser's language set; page errors fail the test at
    `assert_clean`."""
    context = await browser.new_context(viewport=viewport, locale="es-US" if language == "es" else "en-US")
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    return page


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations on the page as it is now."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]


async def check_page(page: Any, name: str, *, language: str = "en") -> None:
    """Screenshot the page at both sizes and scan it with axe at both: zero serious or critical
    violations, no script errors."""
    for size, viewport in VIEWPORTS.items():
        await page.set_viewport_size(viewport)
        await page.screenshot(path=str(SHOTS / f"{name}-{language}-{size}.png"), full_page=True)
        violations = await axe_violations(page)
        assert violations == [], [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:5])
                                  for v in violations]
    assert page.errors == [], page.errors
