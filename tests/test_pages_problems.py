"""Problems in the page's language (issue 13): the API answers in English (RFC 9457 detail), and a
page in Spanish shows its own sentence for the problem's type (the slug is the stable contract),
keeping the API's words in English pages where they carry the most precise detail."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import Api
from tests.support_booking import book
from tests.support_browser import check_page, chromium  # noqa: F401 (fixture)
from tests.support_facility import build_facility
from tests.test_pages_booking import find_resident, pay, pick_slot, sign_in, visits_of

ROOT = Path(__file__).resolve().parents[1]


def slugs_in_code() -> set[str]:
    """Every problem type the control API can answer with, read from its source."""
    found: set[str] = set()
    patterns = (r'slug="([a-z0-9-]+)"', r'ProblemError\(\s*\d+,\s*"([a-z0-9-]+)"',
                r'Violation\(\s*"[A-Z]\d+[a-z]?",\s*"([a-z0-9-]+)"')
    for path in (ROOT / "control_api").rglob("*.py"):
        text = path.read_text()
        for pattern in patterns:
            found.update(re.findall(pattern, text))
    return found


def test_every_problem_type_has_a_spanish_sentence() -> None:
    spanish = json.loads((ROOT / "control_api/static/locales/es/common.json").read_text())["problems"]
    missing = sorted(slugs_in_code() - set(spanish))
    assert not missing, f"problem types without a Spanish sentence in locales/es/common.json: {missing}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("language, expected", [
    ("es", "El residente ya tiene una visita a esa hora (regla B3)."),
    ("en", "the resident already has a visit then (rule B3)"),
])
async def test_a_lost_race_reads_in_the_page_language(api: Api, chromium: Any, language: str,  # noqa: F811
                                                       expected: str) -> None:
    """Someone else books the resident at the chosen time while the visitor pays (B3, B8): the
    refusal (409 resident-busy) reads in the page's language, and nothing is charged."""
    w = await build_facility(api, visitor=True)
    assert w.visitor is not None
    other = await w.approved_visitor(api)
    page = await sign_in(api, chromium, w.visitor, language=language)
    await find_resident(page)
    start = await pick_slot(page, day_index=1)
    (await book(other, w.resident_id, datetime.fromisoformat(start))).ok(201)
    await pay(page, "4242 4242 4242 4242")
    await page.wait_for_selector("#pay-error:not([hidden])")
    assert expected in (await page.inner_text("#pay-error"))
    await check_page(page, "book-race-lost", language=language)
    assert await visits_of(w.visitor) == []
    assert page.errors == []
    await page.context.close()
