"""The OpenAPI 3.1 document, generated from the endpoint declarations in `control_api.api`."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from control_api.api import ApiRoutes, Endpoint

_PATH_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status", "detail"],
}


def _models(endpoints: list[Endpoint]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for ep in endpoints:
        for model in (ep.body, ep.query, _response_model(ep.response)):
            if isinstance(model, type) and issubclass(model, BaseModel):
                found[model.__qualname__] = model
    return list(found.values())


def _response_model(response: Any) -> Any:
    args = getattr(response, "__args__", None)
    if args and getattr(response, "__origin__", None) is list:
        return args[0]
    return response


def build_openapi(routes: ApiRoutes, *, title: str = "openvisit API", version: str = "1") -> dict[str, Any]:
    models = _models(routes.endpoints)
    _, defs = models_json_schema([(m, "validation") for m in models],
                                 ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA

    paths: dict[str, dict[str, Any]] = {}
    for ep in routes.endpoints:
        path = _PATH_PARAM.sub(r"{\1}", ep.path)
        op: dict[str, Any] = {
            "operationId": ep.handler.__name__,
            "summary": ep.summary,
            "tags": list(ep.tags),
            "responses": {},
        }
        if ep.description:
            op["description"] = ep.description
        params: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True,
             "schema": {"type": "string", "minLength": 1, "maxLength": 100}}  # ids are 36 characters
            for name in _PATH_PARAM.findall(ep.path)
        ]
        if ep.query is not None:
            qschema = ep.query.model_json_schema(ref_template="#/components/schemas/{model}")
            required = set(qschema.get("required", []))
            for name, prop in qschema.get("properties", {}).items():
                params.append({"name": name, "in": "query", "required": name in required, "schema": prop})
        if ep.idempotent:
            params.append({"name": "Idempotency-Key", "in": "header", "required": True,
                           "schema": {"type": "string", "pattern": "^[A-Za-z0-9_\\-:.]{8,200}$"},
                           "description": "Repeat a request safely: the same key replays the first answer."})
        if params:
            op["parameters"] = params
        if ep.body is not None:
            op["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}}}
        elif ep.raw_body:
            op["requestBody"] = {"required": True, "content": {
                ct: {"schema": {"type": "string", "format": "binary"}} for ct in ep.raw_body}}
        ok: dict[str, Any] = {"description": "OK"}
        if ep.response_content_type:
            ok["content"] = {ep.response_content_type: {"schema": {"type": "string", "format": "binary"}}}
        elif ep.response is not None:
            schema = TypeAdapter(ep.response).json_schema(ref_template="#/components/schemas/{model}")
            schema.pop("$defs", None)
            if isinstance(_response_model(ep.response), type) and issubclass(_response_model(ep.response),
                                                                                 BaseModel):
                inner = {"$ref": f"#/components/schemas/{_response_model(ep.response).__name__}"}
                schema = {"type": "array", "items": inner} if ep.response is not _response_model(
                    ep.response) else inner
            ok["content"] = {"application/json": {"schema": schema}}
        op["responses"][str(ep.status)] = ok
        problem = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        codes = {400, 422, *ep.errors}
        if not ep.public:
            codes |= {401, 403}
            op["security"] = [{"bearer": []}]
        if "{" in ep.path:
            codes.add(404)
        for code in sorted(codes):
            op["responses"][str(code)] = {"description": "Problem", **problem}
        paths.setdefault(path, {})[ep.method.lower()] = op

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Accounts, facilities, booking and billing for openvisit video visitation."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
