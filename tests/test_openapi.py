"""The OpenAPI document and its browsable page."""

from __future__ import annotations

from control_api.app import build_routes
from control_api.openapi import build_openapi
from tests.support import Api


def test_every_endpoint_is_documented_once_with_unique_operation_ids() -> None:
    routes = build_routes()
    spec = build_openapi(routes)
    op_ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(op_ids) == len(set(op_ids)), sorted(x for x in op_ids if op_ids.count(x) > 1)
    assert len(op_ids) == len(routes.endpoints)
    for path in spec["paths"].values():
        for op in path.values():
            assert op["summary"], op["operationId"]
            assert any(code.startswith("2") for code in op["responses"]), op["operationId"]
            if "security" in op:
                assert "401" in op["responses"] and "403" in op["responses"]


def test_money_moving_endpoints_require_idempotency_keys() -> None:
    spec = build_openapi(build_routes())
    for endpoint in build_routes().endpoints:
        if endpoint.idempotent:
            op = spec["paths"][endpoint.path][endpoint.method.lower()]
            names = {p["name"] for p in op.get("parameters", [])}
            assert "Idempotency-Key" in names


async def test_openapi_json_and_docs_page_are_served(api: Api) -> None:
    spec = (await api.anonymous.get("/v1/openapi.json")).ok()
    assert spec["openapi"].startswith("3.")
    assert "/v1/auth/login" in spec["paths"]
    page = await api.client.get("/v1/docs")
    assert page.status == 200 and "swagger-ui" in await page.text()
    asset = await api.client.get("/v1/docs/static/swagger-ui-bundle.js")
    assert asset.status == 200
