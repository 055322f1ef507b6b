"""Platform pages (issue 13): /v1/docs renders the whole OpenAPI 3.1 document in a real browser
(Swagger UI 5, vendored from npm, no CDN); unknown /app/* paths answer a 404 page; every page has
the favicon; the device and connection check page (camera preview, microphone level)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Api
from tests.support_browser import check_page, chromium, new_page  # noqa: F401 (fixture)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def test_docs_render_every_operation_of_the_openapi_document(api: Api, chromium: Any) -> None:  # noqa: F811
    spec = (await api.anonymous.get("/v1/openapi.json")).ok()
    assert spec["openapi"].startswith("3.1")
    operations = sum(1 for item in spec["paths"].values() for method in item if method in HTTP_METHODS)
    assert operations > 50
    page = await new_page(chromium)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    await page.goto(f"{base(api)}/v1/docs")
    await page.wait_for_selector(".opblock", timeout=30000)
    body = await page.inner_text("body")
    assert "Unable to render this definition" not in body
    assert await page.locator(".opblock").count() == operations
    assert await page.locator(".opblock-tag-section").count() >= 1
    # Every operation opens (the schemas render too), under the docs' strict CSP.
    await page.locator(".opblock-summary-control").first.click()
    await page.wait_for_selector(".opblock.is-open .opblock-body")
    await check_page(page, "docs")  # screenshots and axe, like every page
    assert not [line for line in console if "Content Security Policy" in line], console


async def test_unknown_app_paths_answer_a_404_page_and_api_paths_a_problem(api: Api) -> None:
    from control_api.docs_routes import static_file

    for outside in ("../__init__.py", "../../pyproject.toml", "/etc/passwd", "lib/../../app.py", "a\x00b", "lib", ""):
        assert static_file(outside) is None, outside
    assert static_file("lib/../style.css") is not None
    for path in ("/app/no-such-page.html", "/app/deep/er/missing", "/app/lib", "/app/%2E%2E%2F__init__.py"):
        resp = await api.client.get(path)
        assert resp.status == 404, path
        assert resp.content_type == "text/html", (path, resp.content_type)
        assert 'src="/app/pages/notfound.js"' in await resp.text(), path
    resp = await api.client.get("/v1/no-such-thing")
    assert resp.status == 404 and resp.content_type == "application/problem+json"
    # Existing files are still served as before, with their types.
    for path, kind in (("/app/style.css", "text/css"), ("/app/favicon.svg", "image/svg+xml"),
                       ("/app/lib/layout.js", "javascript"), ("/app/locales/es/notfound.json", "application/json")):
        resp = await api.client.get(path)
        assert resp.status == 200 and kind in resp.content_type, (path, resp.content_type)


async def test_every_page_links_the_favicon(api: Api) -> None:
    from control_api.docs_routes import STATIC

    pages = sorted(STATIC.glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "officer.html", "review.html", "kiosk.html", "visitor.html",
                                       "404.html"}
    for page in pages:
        assert '<link rel="icon" href="/app/favicon.svg"' in page.read_text(), page.name
    assert '<link rel="icon" href="/app/favicon.svg"' in await (await api.client.get("/v1/docs")).text()
    # The device check is reachable from the landing page and from the visitor's call view.
    assert 'href="/app/check.html"' in (STATIC / "index.html").read_text()
    visitor = (STATIC / "visitor.html").read_text()
    assert 'href="/app/check.html' in visitor.split('id="call"', 1)[1]


async def test_not_found_page_in_both_languages(api: Api, chromium: Any) -> None:  # noqa: F811
    for language, heading, home in (("en", "We could not find that page", "Go to the start page"),
                                    ("es", "No encontramos esa página", "Ir a la página de inicio")):
        page = await new_page(chromium, language=language)
        resp = await page.goto(f"{base(api)}/app/some/old-link.html")
        assert resp.status == 404 and resp.headers["content-type"].startswith("text/html")
        await page.wait_for_selector(f"h1:has-text('{heading}')")
        await page.wait_for_selector("#asked-path:has-text('/app/some/old-link.html')")
        assert await page.get_attribute("html", "lang") == language
        assert await page.inner_text("#home") == home and await page.get_attribute("#home", "href") == "/app/"
        await check_page(page, "notfound", language=language)
        await page.context.close()


async def test_the_officer_console_stays_signed_in_when_the_demo_clock_moves(api: Api, chromium: Any) -> None:  # noqa: F811
    """Issue 13: moving the test clock 30 days signs nobody out. The console's access token has
    expired by the server's (moved) clock while the browser's clock says it is fresh: the API's
    401 makes call.js renew it once with the refresh token, and the console carries on."""
    from tests.support import PASSWORD
    from tests.support_facility import build_facility

    world = await build_facility(api)
    page = await new_page(chromium)
    await page.goto(f"{base(api)}/app/officer.html")
    await page.fill("#email", world.officer.extra["email"])
    await page.fill("#password", PASSWORD)
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#list:has-text('No visits are live')")
    statuses: list[tuple[str, int]] = []
    page.on("response", lambda r: statuses.append((r.url.split("/v1/", 1)[-1], r.status)) if "/v1/" in r.url else None)
    (await world.operator.post("/v1/test-clock/advance", {"seconds": 30 * 24 * 3600})).ok()
    async with page.expect_response(lambda r: r.url.endswith("/v1/auth/refresh"), timeout=15000) as renewed:
        pass
    assert (await renewed.value).status == 200
    async with page.expect_response(lambda r: "/live-visits" in r.url, timeout=15000) as listed:
        pass
    assert (await listed.value).status == 200, statuses
    assert await page.is_visible("#list:has-text('No visits are live')")
    assert not await page.is_visible("#login")
    assert page.errors == [], page.errors


async def test_check_page_shows_the_camera_and_the_microphone_level(api: Api, chromium: Any) -> None:  # noqa: F811
    """The device check with Chromium's fake camera and microphone: the preview plays, the level
    meter moves, the connection is checked; English and Spanish."""
    for language, heading, ready in (("en", "Check your camera, microphone and connection",
                                      "All set: this device is ready for your visit."),
                                     ("es", "Revise su cámara, micrófono y conexión",
                                      "Todo listo: este dispositivo está preparado para su visita.")):
        page = await new_page(chromium, language=language)
        resp = await page.goto(f"{base(api)}/app/check.html?return=/app/visitor.html%3Fvisit%3Dabc")
        assert resp.headers["permissions-policy"].startswith("camera=(self), microphone=(self)")
        await page.wait_for_selector(f"h1:has-text('{heading}')")
        await page.wait_for_selector("#net-status[data-state=ok]")
        await page.wait_for_selector("#webrtc-status[data-state=ok]")
        assert await page.get_attribute("#back-link", "href") == "/app/visitor.html?visit=abc"
        await check_page(page, "check-start", language=language)
        await page.click("#start")
        await page.wait_for_selector("#preview[data-playing=true]", timeout=15000)
        await page.wait_for_selector("#camera-status[data-state=ok]")
        await page.wait_for_selector("#mic-status[data-state=ok]", timeout=15000)
        assert int(await page.get_attribute("#mic-level", "data-peak") or 0) >= 8
        await page.wait_for_selector(f"#summary:has-text('{ready}')")
        assert await page.locator("#camera-select option").count() >= 1
        assert await page.is_hidden("#problem")
        await page.click("#tone")
        await page.wait_for_selector("#speaker-status[data-state=ok]")
        await check_page(page, "check-working", language=language)
        await page.click("#stop")
        await page.wait_for_selector("#camera-status[data-state=idle]")
        assert await page.get_attribute("#preview", "data-playing") is None
        await page.context.close()


async def test_check_page_says_what_to_do_when_the_camera_is_blocked(api: Api, chromium: Any) -> None:  # noqa: F811
    """A blocked camera and microphone (here: the page served with camera=() and microphone=(),
    which the browser refuses like a person's "Block") is explained in plain words, with the
    matching help opened."""
    for language, words in (("en", "The browser did not allow the camera and microphone."),
                            ("es", "El navegador no permitió usar la cámara y el micrófono.")):
        page = await new_page(chromium, language=language)

        async def blocked(route: Any) -> None:
            response = await route.fetch()
            headers = {**response.headers, "permissions-policy": "camera=(), microphone=()"}
            await route.fulfill(response=response, headers=headers)

        await page.route("**/app/check.html", blocked)
        await page.goto(f"{base(api)}/app/check.html")
        await page.wait_for_selector("#net-status[data-state=ok]")
        await page.click("#start")
        await page.wait_for_selector("#camera-status[data-state=failed]")
        await page.wait_for_selector("#mic-status[data-state=failed]")
        await page.wait_for_selector(f"#problem:not([hidden]):has-text('{words}')")
        assert await page.get_attribute("#help-denied", "open") is not None
        await page.wait_for_selector("#summary[data-state=warn]")
        await check_page(page, "check-blocked", language=language)
        await page.context.close()


async def test_staff_pages_use_the_app_sign_in_and_frame(api: Api, chromium: Any) -> None:  # noqa: F811
    """Issue 13: the officer console, the review page and the kiosk are in the app's frame (the
    header says who is signed in and signs out); signed in once at /app/, they skip their own
    form; a kiosk signed in once stays signed in when the page reloads."""
    from tests.support import PASSWORD
    from tests.support_facility import build_facility

    world = await build_facility(api)
    for caller, target, ready in ((world.officer, "officer.html", "#list:has-text('No visits are live')"),
                                  (world.investigator, "review.html", "#search:not([hidden])")):
        page = await new_page(chromium)
        await page.goto(f"{base(api)}/app/")
        await page.fill("#email", caller.extra["email"])
        await page.fill("#password", PASSWORD)
        await page.click("#login button[type=submit]")
        await page.wait_for_url(f"**/app/{target}")
        await page.wait_for_selector(ready)
        assert await page.is_hidden("#login")
        await page.wait_for_selector("#app-header .who:has-text('Signed in as')")
        await page.wait_for_selector(f"#app-header a[aria-current=page][href='/app/{target}']")
        await check_page(page, target.removesuffix(".html"))
        await page.click("#app-header .who button")
        await page.wait_for_url(f"{base(api)}/app/")
        await page.goto(f"{base(api)}/app/{target}")
        await page.wait_for_selector("#login:not([hidden])")
        assert page.errors == [], page.errors
        await page.context.close()

    for language, empty in (("en", "No visits right now."), ("es", "No hay visitas en este momento.")):
        page = await new_page(chromium, language=language)
        await page.goto(f"{base(api)}/app/kiosk.html")
        await page.wait_for_selector(f"html[lang={language}] #app-header select")
        await check_page(page, "kiosk-sign-in", language=language)
        await page.fill("#kiosk-id", world.kiosk_id)
        await page.fill("#secret", world.kiosk_secret)
        await page.click("#login button")
        await page.wait_for_selector(f"#visits:has-text('{empty}')")
        await page.wait_for_selector("#app-header .who button")  # sign-out
        await check_page(page, "kiosk", language=language)
        await page.reload()
        await page.wait_for_selector("#list:not([hidden])")
        assert await page.is_hidden("#login")
        assert page.errors == [], page.errors
        await page.context.close()

    # The officer console and the review page in Spanish, signed in on their own forms.
    for caller, target, ready in ((world.officer, "officer", "#list:has-text('No hay visitas en curso')"),
                                  (world.investigator, "review", "#results:has-text('Ninguna grabación coincide')")):
        page = await new_page(chromium, language="es")
        await page.goto(f"{base(api)}/app/{target}.html")
        await page.wait_for_selector("#login button:has-text('Iniciar sesión')")
        await check_page(page, f"{target}-sign-in", language="es")
        await page.fill("#email", caller.extra["email"])
        await page.fill("#password", PASSWORD)
        await page.click("#login button[type=submit]")
        await page.wait_for_selector(ready)
        await check_page(page, target, language="es")
        assert page.errors == [], page.errors
        await page.context.close()
