"""Reading a request's input into its endpoint's models, with a precise 4xx for each way it can
be wrong: NUL characters, a body too large, too deeply nested, not JSON, of the wrong type, or
not matching the model (422 naming the field)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ValidationError

from control_api.problems import ProblemError, bad_request

if TYPE_CHECKING:
    from control_api.api import Endpoint

MAX_JSON_BYTES = 256 * 1024
MAX_JSON_DEPTH = 32  # arrays/objects nested deeper are refused before parsing (the parser recurses)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def validation_problem(exc: ValidationError, where: str) -> ProblemError:
    errors = [
        {"location": [where, *[str(p) for p in err["loc"]]], "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    first = errors[0]
    field_name = ".".join(first["location"][1:]) or where
    return ProblemError(422, "validation-error", f"{field_name}: {first['message']}",
                        title="Request validation failed", extra={"errors": errors})


def refuse_nul(request: web.Request) -> None:
    """PostgreSQL text cannot hold NUL: refused in the path and the query string up front."""
    if any("\x00" in v for v in request.match_info.values()) or any(
            "\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise bad_request("NUL characters are not allowed", slug="nul-character")


def parse_query(request: web.Request, model: type[BaseModel] | None) -> BaseModel | None:
    if model is None:
        return None
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_problem(exc, "query") from exc


async def read_body(request: web.Request, endpoint: Endpoint) -> tuple[BaseModel | None, bytes | None]:
    """The endpoint's body: (model, None) for JSON, (None, bytes) for a raw upload, or neither."""
    if endpoint.raw_body:
        return None, await read_raw(request, endpoint)
    if endpoint.body is not None:
        return await read_json(request, endpoint.body), None
    return None, None


def json_depth(raw: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, found without recursion (and
    without parsing): brackets inside strings are skipped. Malformed text gives some number; the
    parser then reports what is wrong with it."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


async def read_json(request: web.Request, model: type[BaseModel]) -> BaseModel:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise ProblemError(413, "payload-too-large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    raw = await request.content.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ProblemError(413, "payload-too-large", f"JSON bodies are limited to {MAX_JSON_BYTES} bytes")
    ctype = request.content_type
    if raw and ctype not in ("application/json", "application/octet-stream") and not ctype.endswith("+json"):
        raise ProblemError(415, "unsupported-media-type", f"expected application/json, got {ctype}")
    if b"\\u0000" in raw or b"\x00" in raw:  # PostgreSQL text cannot hold NUL: refuse it up front
        raise bad_request("NUL characters are not allowed", slug="nul-character")
    if json_depth(raw) > MAX_JSON_DEPTH:
        raise bad_request(f"JSON bodies may nest arrays and objects at most {MAX_JSON_DEPTH} levels deep",
                          slug="too-deeply-nested", max_depth=MAX_JSON_DEPTH)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"body is not valid JSON: {exc}", slug="malformed-json") from exc
    if data is None:
        raise bad_request("a JSON body is required", slug="missing-body")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_problem(exc, "body") from exc


async def read_raw(request: web.Request, endpoint: Endpoint) -> bytes:
    if request.content_type not in endpoint.raw_body:
        raise ProblemError(415, "unsupported-media-type",
                           f"expected one of {', '.join(endpoint.raw_body)}, got {request.content_type}")
    if request.content_length is not None and request.content_length > endpoint.raw_max_bytes:
        raise ProblemError(413, "payload-too-large", f"bodies are limited to {endpoint.raw_max_bytes} bytes")
    raw = await request.content.read(endpoint.raw_max_bytes + 1)
    if len(raw) > endpoint.raw_max_bytes:
        raise ProblemError(413, "payload-too-large", f"bodies are limited to {endpoint.raw_max_bytes} bytes")
    if not raw:
        raise bad_request("the request body is empty", slug="missing-body")
    return raw
