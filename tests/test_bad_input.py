"""Issue 12: malformed input gets a precise 4xx problem+json, never a 5xx.

Deep JSON nesting (the parser recurses), dates at the calendar's edges (offsets and lengths
overflow there), and requests aiohttp's HTTP parser refuses before any middleware runs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import pytest

from control_api.api import MAX_JSON_DEPTH
from control_api.app import MAX_HEADER_FIELD_BYTES, MAX_REQUEST_LINE_BYTES, create_app, start_site
from openvisit.settings import Settings
from tests.support import Api
from tests.support_facility import build_facility

DEEP = b"[" * 1000 + b"]" * 1000
EDGE_INSTANTS = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:00+00:00", "1999-12-31T23:59:59+00:00",
                 "2201-01-01T00:00:00+00:00"]


@pytest.fixture(autouse=True)
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """After each test the server log holds no unhandled exception (problems.problem_middleware)."""
    caplog.set_level(logging.ERROR)
    yield
    unhandled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unhandled error on")]
    assert not unhandled, unhandled


def _date_problem(body: dict[str, object]) -> None:
    detail = str(body["detail"])
    assert "2000" in detail and "2200" in detail, detail


async def test_deeply_nested_json_is_400_before_parsing(api: Api) -> None:
    w = await build_facility(api, visitor=True)
    assert w.visitor is not None
    headers = {"Content-Type": "application/json"}
    for caller, path in ((api.anonymous, "/v1/auth/login"), (api.anonymous, "/v1/accounts"),
                         (w.visitor, "/v1/quotes")):
        body = (await caller.post(path, data=DEEP, headers=headers)).problem(400, "too-deeply-nested")
        assert str(MAX_JSON_DEPTH) in body["detail"] and body["max_depth"] == MAX_JSON_DEPTH
    # inside a valid object too, and brackets inside strings do not count
    nested = b'{"email": "a@example.org", "password": ' + DEEP + b"}"
    (await api.anonymous.post("/v1/auth/login", data=nested, headers=headers)).problem(400, "too-deeply-nested")
    in_string = b'{"email": "a@example.org", "password": "' + b"[" * 1000 + b'"}'
    assert (await api.anonymous.post("/v1/auth/login", data=in_string, headers=headers)).status in (401, 422)


async def test_dates_at_the_calendars_edges_are_422(api: Api) -> None:
    w = await build_facility(api, visitor=True)
    assert w.visitor is not None
    for starts_at in EDGE_INSTANTS:
        quote_body = {"resident_id": w.resident_id, "starts_at": starts_at, "length_minutes": 30}
        _date_problem((await w.visitor.post("/v1/quotes", quote_body)).problem(422, "validation-error"))
        _date_problem((await w.visitor.post("/v1/visits", quote_body, idempotency_key=True)
                       ).problem(422, "validation-error"))
        _date_problem((await w.admin.post(f"/v1/visits/{uuid.uuid4()}/move", {"starts_at": starts_at})
                       ).problem(422, "validation-error"))
        closure = {"starts_at": "2030-01-01T00:00:00+00:00", "ends_at": starts_at, "reason": "edge"}
        _date_problem((await w.admin.post(w.path("/closures"), closure)).problem(422, "validation-error"))
        q = quote(starts_at)
        _date_problem((await w.investigator.get(w.path(f"/recordings?from={q}"))).problem(422, "validation-error"))
        _date_problem((await w.visitor.get(f"/v1/visits?to={q}")).problem(422, "validation-error"))
    for day in ("9999-12-30", "0001-01-01", "1999-12-31", "2201-01-01"):
        _date_problem((await w.visitor.get(f"/v1/visits?from={day}")).problem(422, "validation-error"))
        avail = f"/v1/residents/{w.resident_id}/availability?from={day}&to={day}&length_minutes=30"
        _date_problem((await w.visitor.get(avail)).problem(422, "validation-error"))
    # the edges of the range itself are accepted
    ok = await w.visitor.get("/v1/visits?from=2000-01-01&to=2200-12-31")
    assert ok.status == 200, ok.body


async def test_http_parser_refusals_are_problem_json(settings: Settings) -> None:
    """A 20 KB query string or header is refused by aiohttp's parser before routing; it is still
    answered with problem+json and a precise detail (control_api.app.ProblemRequestHandler)."""
    app = create_app(settings, run_sweeper=False)
    runner, port = await start_site(app, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with http.get(f"{base}/v1/visits?x={'a' * 20_000}") as resp:
                assert resp.status == 400
                assert resp.content_type == "application/problem+json"
                body = await resp.json(content_type=None)
            assert body["type"].endswith("/request-line-too-long") and body["status"] == 400
            assert str(MAX_REQUEST_LINE_BYTES) in body["detail"] and len(await resp.text()) < 1000
            async with http.get(f"{base}/v1/visits", headers={"X-Big": "b" * 20_000}) as resp:
                assert resp.status == 400 and resp.content_type == "application/problem+json"
                body = await resp.json(content_type=None)
            assert str(MAX_HEADER_FIELD_BYTES) in body["detail"]
            async with http.get(f"{base}/v1/visits?x={'a' * 4000}") as resp:  # under the limit: routed
                assert resp.status == 401 and resp.content_type == "application/problem+json"
    finally:
        await runner.cleanup()


async def test_lone_surrogates_in_stored_text_are_not_5xx(api: Api) -> None:
    """A JSON \\ud800 escape decodes to a lone surrogate, which UTF-8 (and so both databases) cannot hold."""
    body = (b'{"email": "s@example.org", "password": "correct horse battery", "legal_name": "A \\ud800 B", '
            b'"postal_address": "1 Main St, Springfield", "date_of_birth": "1980-01-01", "phone": "+15555550100"}')
    resp = await api.anonymous.post("/v1/accounts", data=body, headers={"Content-Type": "application/json"})
    assert 400 <= resp.status < 500, resp.body
    assert resp.headers["Content-Type"].startswith("application/problem+json")
