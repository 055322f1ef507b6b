"""The landing page (issue 13): one sign-in for every role, landing each on its own home; English
and Spanish; accessible; usable on a phone."""

from __future__ import annotations

from typing import Any

import pytest

from control_api.auth import Role
from tests.support import PASSWORD, Api
from tests.support_browser import PHONE, check_page, chromium, new_page  # noqa: F401 (fixture)

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def base(api: Api) -> str:
    return f"http://{api.client.server.host}:{api.client.server.port}"


async def test_landing_page_in_both_languages_is_accessible(api: Api, chromium: Any) -> None:  # noqa: F811
    for language, heading in (("en", "Video visits with your loved ones"),
                              ("es", "Visitas por video con sus seres queridos")):
        page = await new_page(chromium, language=language)
        await page.goto(f"{base(api)}/")
        assert page.url.endswith("/app/")
        await page.wait_for_selector(f"h1:has-text('{heading}')")
        assert await page.get_attribute("html", "lang") == language
        await check_page(page, "landing", language=language)


async def test_each_role_lands_on_its_home_and_signs_out(api: Api, chromium: Any) -> None:  # noqa: F811
    from tests.support_facility import build_facility

    world = await build_facility(api)
    accounts = {"operator": world.operator, "admin": world.admin, "officer": world.officer,
                "investigator": world.investigator}
    visitor = await api.sign_up()
    accounts["visitor"] = visitor
    homes = {"operator": "/app/operator.html", "admin": "/app/admin.html", "officer": "/app/officer.html",
             "investigator": "/app/review.html", "visitor": "/app/visits.html"}
    for role, caller in accounts.items():
        page = await new_page(chromium, viewport=PHONE)
        await page.goto(f"{base(api)}/app/")
        await page.fill("#email", caller.extra["email"])
        await page.fill("#password", "wrong password here")
        await page.click("#login button[type=submit]")
        await page.wait_for_selector("#login-error:has-text('wrong')")
        await page.fill("#password", PASSWORD)
        await page.click("#login button[type=submit]")
        await page.wait_for_url(f"**{homes[role]}")
        assert page.errors == [], (role, page.errors)
        await page.context.close()
    assert Role.VISITOR.value in homes
