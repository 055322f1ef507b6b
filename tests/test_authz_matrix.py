"""Authorization matrix: every route, every role, own facility and another facility (V3).

The world has two facilities with the same shape. Every caller belongs to facility "own" (staff,
kiosk) or has its visits there (visitor). For each endpoint we call it as each role:

- a role the endpoint does not list gets 401 (anonymous) or 403, whatever the body;
- a listed role reaching into the OTHER facility (its ids in the path) never gets a 2xx;
- a listed role on its OWN facility's read endpoints gets a 2xx (the matrix is not vacuous).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from control_api.api import Endpoint
from control_api.app import build_routes
from control_api.auth import Principal, Role
from control_api.db.models import (
    User,
)
from tests.support import Api, As
from tests.support_facility import PNG
from tests.support_world import seed_facility

ENDPOINTS = build_routes().endpoints
PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
CALLERS = ("anonymous", "visitor", "attorney", "admin", "officer", "investigator", "operator", "kiosk")


@dataclass
class World:
    ids: dict[str, dict[str, str]]  # "own"/"other" -> path parameter name -> id
    callers: dict[str, As]


@pytest.fixture
async def world(api: Api) -> World:
    now = api.ctx.clock.now()
    visitor = await api.sign_up("visitor")
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    attorney = await api.sign_up("attorney")
    async with api.ctx.sessions() as s:
        v_user = await s.get(User, visitor.principal_id)
        a_user = await s.get(User, attorney.principal_id)
    assert v_user is not None and a_user is not None
    own = await seed_facility(api.ctx.sessions, "own", now, v_user, a_user)
    other_visitor = await api.sign_up("visitor")
    async with api.ctx.sessions() as s:
        ov_user = await s.get(User, other_visitor.principal_id)
    assert ov_user is not None
    other = await seed_facility(api.ctx.sessions, "other", now, ov_user, a_user)
    callers: dict[str, As] = {"anonymous": api.anonymous, "visitor": visitor, "attorney": attorney,
                              "operator": await api.operator()}
    for role in (Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR):
        callers[role.value] = await api.create_user(role, facility_id=own["facility_id"])
    kiosk_token = api.token_for(Principal(own["kiosk_id"], Role.KIOSK, own["facility_id"], own["unit_id"]))
    callers["kiosk"] = As(api, kiosk_token, own["kiosk_id"])
    return World(ids={"own": own, "other": other}, callers=callers)


VALID_QUERIES = {
    "/v1/residents/{resident_id}/availability": "?from=2031-01-01&to=2031-01-02&length_minutes=30",
    "/v1/facilities/{facility_id}/residents/lookup": "?booking_number=own-1",
}


def _path(endpoint: Endpoint, ids: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return ids.get(name, "00000000-0000-4000-8000-000000000000")

    return PARAM.sub(sub, endpoint.path) + VALID_QUERIES.get(endpoint.path, "")


def _role_of(caller: str) -> Role | None:
    return None if caller == "anonymous" else Role(caller)


def valid_bodies(ids: dict[str, str]) -> dict[tuple[str, str], Any]:
    """Well-formed bodies, so that a refusal comes from the facility check and not from validation."""
    when = {"starts_at": "2031-01-01T10:00:00Z", "ends_at": "2031-01-01T11:00:00Z"}
    return {
        ("PATCH", "/v1/facilities/{facility_id}"): {"name": "renamed"},
        ("POST", "/v1/facilities/{facility_id}/housing-units"): {"name": "Z", "kiosk_count": 1},
        ("PATCH", "/v1/facilities/{facility_id}/housing-units/{unit_id}"): {"kiosk_count": 3},
        ("PUT", "/v1/facilities/{facility_id}/housing-units/{unit_id}/windows"): {"windows": []},
        ("POST", "/v1/facilities/{facility_id}/closures"): {**when, "reason": "count"},
        ("PUT", "/v1/facilities/{facility_id}/session-options"): {"options": []},
        ("POST", "/v1/facilities/{facility_id}/kiosks"): {"housing_unit_id": ids["unit_id"], "name": "k"},
        ("PATCH", "/v1/facilities/{facility_id}/kiosks/{kiosk_id}"): {"active": False},
        ("POST", "/v1/facilities/{facility_id}/staff"): {"email": "m@example.org", "legal_name": "M",
                                                         "role": "officer", "password": "p" * 12},
        ("POST", "/v1/facilities/{facility_id}/residents"): {"booking_number": "X-1", "full_name": "X",
                                                             "housing_unit_id": ids["unit_id"]},
        ("PATCH", "/v1/facilities/{facility_id}/residents/{resident_id}"): {"full_name": "Y"},
        ("POST", "/v1/facilities/{facility_id}/access-requests/{request_id}/decision"): {"decision": "approve"},
        ("POST", "/v1/facilities/{facility_id}/bar-verifications/{verification_id}/decision"): {"decision": "verify"},
        ("POST", "/v1/visits/{visit_id}/review"): {"decision": "approve"},
        ("POST", "/v1/visits/{visit_id}/cancel"): {"reason": "matrix"},
        ("POST", "/v1/visits/{visit_id}/move"): {"starts_at": "2031-01-01T10:00:00Z"},
        ("POST", "/v1/visits/{visit_id}/disconnect"): {"reason": "conduct"},
        ("POST", "/v1/credit-requests/{request_id}/decision"): {"decision": "approve"},
        ("POST", "/v1/recordings/{visit_id}/flags"): {"at_seconds": 1, "note": "matrix"},
        ("PUT", "/v1/recordings/{visit_id}/legal-hold"): {"hold": True, "reason": "matrix"},
    }


async def _call(caller: As, endpoint: Endpoint, path: str, ids: dict[str, str] | None = None) -> int:
    kwargs: dict[str, Any] = {}
    if endpoint.idempotent:
        kwargs["idempotency_key"] = "matrix-key-0001"
    if endpoint.raw_body:
        kwargs["data"] = b"booking_number,full_name,housing_unit\nX-2,X,A\n"
        kwargs["headers"] = {"Content-Type": endpoint.raw_body[0]}
    elif endpoint.body is not None:
        kwargs["json"] = valid_bodies(ids or {"unit_id": "x"}).get((endpoint.method, endpoint.path), {})
    resp = await caller.request(endpoint.method, path, **kwargs)
    return resp.status


async def test_every_route_refuses_roles_it_does_not_list(api: Api, world: World) -> None:
    failures = []
    for endpoint in ENDPOINTS:
        if endpoint.public:
            continue
        path = _path(endpoint, world.ids["own"])
        for caller in CALLERS:
            role = _role_of(caller)
            if role is not None and role in endpoint.roles:
                continue
            status = await _call(world.callers[caller], endpoint, path)
            # media-node endpoints take the media secret: every user token is simply not a credential
            expected = 401 if caller == "anonymous" or Role.MEDIA in endpoint.roles else 403
            if status != expected:
                failures.append(f"{endpoint.method} {endpoint.path} as {caller}: {status}, expected {expected}")
    assert not failures, "\n".join(failures)


async def test_staff_and_kiosks_never_reach_another_facility(api: Api, world: World) -> None:
    """V3: with the other facility's ids in the path (and a well-formed body), every listed staff or
    kiosk role is refused with 403 or 404, never a 2xx and never a validation error."""
    failures = []
    checked = 0
    other = world.ids["other"]
    for endpoint in ENDPOINTS:
        if endpoint.public or "{" not in endpoint.path:
            continue
        path = _path(endpoint, other)
        for caller in ("admin", "officer", "investigator", "kiosk"):
            if Role(caller) not in endpoint.roles:
                continue
            status = await _call(world.callers[caller], endpoint, path, other)
            checked += 1
            if status not in (403, 404):
                failures.append(f"{endpoint.method} {endpoint.path} as {caller} on other facility: {status}")
    assert checked > 40
    assert not failures, "\n".join(failures)


async def test_visitors_never_reach_another_visitors_visit(api: Api, world: World) -> None:
    failures = []
    other = world.ids["other"]
    for endpoint in ENDPOINTS:
        if "{visit_id}" not in endpoint.path:
            continue
        for caller in ("visitor", "attorney"):
            if Role(caller) not in endpoint.roles:
                continue
            status = await _call(world.callers[caller], endpoint, _path(endpoint, other), other)
            if status not in (403, 404):
                failures.append(f"{endpoint.method} {endpoint.path} as {caller}: {status}")
    assert not failures, "\n".join(failures)


async def test_own_facility_reads_succeed_for_listed_staff(api: Api, world: World) -> None:
    """The other half of the matrix: the same GET routes answer 2xx for their own facility."""
    checked = 0
    failures = []
    for endpoint in ENDPOINTS:
        if endpoint.method != "GET" or endpoint.public or endpoint.query is not None:
            continue
        if "facility_id" not in endpoint.path:
            continue
        path = _path(endpoint, world.ids["own"])
        for caller in ("admin", "operator"):
            if Role(caller) not in endpoint.roles:
                continue
            status = await _call(world.callers[caller], endpoint, path, world.ids["own"])
            checked += 1
            if status >= 300:
                failures.append(f"GET {endpoint.path} as {caller}: {status}")
    assert checked > 15
    assert not failures, "\n".join(failures)
