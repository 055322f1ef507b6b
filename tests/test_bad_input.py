"""Issue 12: malformed input gets a precise 4xx problem+json, never a 5xx.

Deep JSON nesting (the parser recurses), dates at the calendar's edges (offsets and lengths
overflow there), and requests aiohttp's HTTP parser refuses before any middleware runs. That no
test leaves an unhandled exception in the server log is checked for every test by
tests/conftest.py (ServerErrorCheck); the last tests here show that check at work.
"""

from __future__ import annotations

import uuid
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


CSV_LINE_ENDS = {"CRLF": "\r\n", "LF": "\n", "CR": "\r"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_roster_csv_with_any_line_ends_is_read_not_a_500(api: Api) -> None:
    """Found by tests/test_fuzz_edges.py: bare CR line ends (old Mac exports) made the csv module
    raise while reading the header row, a 500."""
    w = await build_facility(api)
    unit = (await w.admin.get(w.path("/housing-units"))).ok()[0]["name"]
    for n, (name, end) in enumerate(CSV_LINE_ENDS.items()):
        csv = end.join(["booking_number,full_name,housing_unit", f"LE-{n},Line {name},{unit}", ""]).encode()
        resp = await w.admin.post(w.path("/residents/import"), data=csv, headers={"Content-Type": "text/csv"})
        assert resp.ok() == {"created": 1, "updated": 0}, name
    broken = b'booking_number,full_name,housing_unit\r\n"LE-9,\x00'
    (await w.admin.post(w.path("/residents/import"), data=broken, headers={"Content-Type": "text/csv"})
     ).problem(400, "bad-encoding")


SERVER_ERROR_SAMPLE = """
import asyncio

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control_api.problems import problem_middleware


async def boom(request: web.Request) -> web.Response:
    raise OverflowError("date value out of range")


async def answer(path: str, middlewares: list, raw: bytes | None = None) -> int:
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/boom", boom)
    app.router.add_get("/ok", lambda request: web.Response(text="ok"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        if raw is not None:  # a request aiohttp's parser refuses (its stock handler logs it at ERROR)
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            await writer.drain()
            status = int((await reader.read()).split()[1])
            writer.close()
            return status
        async with aiohttp.ClientSession() as http, http.get(server.make_url(path)) as resp:
            return resp.status
    finally:
        await server.close()


def test_a_500_from_the_problem_middleware():
    assert asyncio.run(answer("/boom", [problem_middleware])) == 500


def test_a_500_from_aiohttp_itself():
    assert asyncio.run(answer("/boom", [])) == 500


@pytest.mark.allow_server_errors
def test_a_deliberate_500():
    assert asyncio.run(answer("/boom", [problem_middleware])) == 500


def test_no_error():
    assert asyncio.run(answer("/ok", [problem_middleware])) == 200


def test_a_malformed_request_is_not_a_server_error():
    assert asyncio.run(answer("/", [], raw=b"GET / HTTP/1.1\\r\\nBad Header Line\\r\\n\\r\\n")) == 400
"""


@pytest.mark.allow_server_errors  # the sample session below provokes them; its own check must see them
def test_the_server_error_check_fails_the_test_that_logged_an_unhandled_exception(
        pytester: pytest.Pytester, request: pytest.FixtureRequest) -> None:
    """conftest.ServerErrorCheck in a session of its own: the two tests whose request made a server
    log an unhandled exception fail with it in the message; the opted-out, the clean one and a
    malformed request that aiohttp's parser refused (a 400) pass."""
    check = request.config.pluginmanager.get_plugin("openvisit-server-error-check")
    assert check is not None, "tests/conftest.py registers the server error check"
    pytester.makepyfile(test_sample=SERVER_ERROR_SAMPLE)
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                          plugins=[type(check)()])
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines([
        "*_ test_a_500_from_the_problem_middleware _*",
        "the server logged 1 unhandled exception(s)*",
        "*[[]control_api.unhandled] unhandled error on GET /boom: OverflowError: date value out of range*",
        "*_ test_a_500_from_aiohttp_itself _*",
        "the server logged 1 unhandled exception(s)*",
        "*[[]aiohttp.server] Error handling request from 127.0.0.1 -- OverflowError: date value out of range*",
        "FAILED test_sample.py::test_a_500_from_the_problem_middleware*",
        "FAILED test_sample.py::test_a_500_from_aiohttp_itself*"])
