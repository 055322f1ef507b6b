"""Edge values for every route in the OpenAPI document (issue 12): never a 5xx.

Hypothesis draws requests from the document the app serves (its paths, path and query
parameters, JSON body schemas, raw upload types and Idempotency-Key headers) and fills them with
values from the edges: the calendar's ends with extreme offsets, leap days, DST gaps and naive
instants; arrays and objects nested 1,000 deep; 10**30, 1e308, NaN and Infinity literals; NUL,
lone surrogates (the JSON escape \\ud800), RTL overrides, zero-width joiners, 4-byte emoji and
100k-character strings; empty strings, wrong types and extra fields; the same in path segments,
query strings and the Authorization and Idempotency-Key headers.

Most drawn values are *valid but extreme* (a date on the edge of the accepted range, a string of
exactly the maximum length in 4-byte characters, a real id) so that the request gets past
validation and the 401/403 gate into the handler: each request is made as a caller of a role the
route admits (operator, visitor, attorney, the facility's admin, officer and investigator, its
kiosk, a media node), against a facility seeded with one row of everything.

Properties: the status is never 5xx; every 4xx is application/problem+json with type, title,
status (equal to the HTTP status) and detail. The server log check in conftest.py also fails a
test whose request made the server log an unhandled exception.

Runs against a real server (control_api.app.start_site, so aiohttp's own parser refusals go
through the app's handler too) on a loopback port with SQLite. Derandomized: the same examples
every run.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import io
import json
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import update

from control_api.app import build_routes, create_app, start_site
from control_api.auth import Principal, Role, hash_password
from control_api.context import CONTEXT, AppContext
from control_api.db.engine import make_engine
from control_api.db.migrate import upgrade
from control_api.db.models import AccessRequest, BarVerification, Recording, RecordingFile, User, Visit
from control_api.openapi import build_openapi
from control_api.services.recordings import playback_token
from openvisit.settings import Mode, Settings
from tests.support_world import seed_facility

OPENAPI: dict[str, Any] = build_openapi(build_routes())
SCHEMAS: dict[str, Any] = OPENAPI["components"]["schemas"]
_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")
# Who may call each operation (the document says only "bearer"): from the endpoint declarations.
ROLES: dict[tuple[str, str], tuple[Role, ...]] = {
    (ep.method, _PARAM.sub(r"{\1}", ep.path)): tuple(sorted(ep.roles)) for ep in build_routes().endpoints}
OPERATIONS: list[tuple[str, str, dict[str, Any]]] = [
    (method.upper(), path, op) for path, item in OPENAPI["paths"].items()
    for method, op in item.items() if method in {"get", "post", "put", "patch", "delete"}]

# Per operation (about 90): 20 keeps the file near 45 s on two cores; EDGE_EXAMPLES=500 digs deeper.
EXAMPLES = int(os.environ.get("EDGE_EXAMPLES", "20"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# ------------------------------------------------------------------ raw JSON fragments

@dataclass(frozen=True)
class Raw:
    """A JSON fragment written verbatim into a body: what json.dumps cannot or will not write."""

    text: str


def deep(n: int, kind: str = "[") -> Raw:
    close = "]" if kind == "[" else "}"
    if kind == "{":
        return Raw('{"a":' * n + "1" + close * n)
    return Raw("[" * n + close * n)


def to_json(value: Any) -> bytes:
    """JSON text with Raw fragments spliced in; lone surrogates go out as \\udXXX escapes."""
    raws: dict[str, str] = {}

    def swap(v: Any) -> Any:
        if isinstance(v, Raw):
            key = f"@@raw{len(raws)}@@"
            raws[key] = v.text
            return key
        if isinstance(v, dict):
            return {k: swap(x) for k, x in v.items()}
        if isinstance(v, list):
            return [swap(x) for x in v]
        return v

    text = json.dumps(swap(value), ensure_ascii=True, allow_nan=True)
    for key, raw in raws.items():
        text = text.replace(f'"{key}"', raw)
    return text.encode()


# ------------------------------------------------------------------ values

NUMBER_LITERALS = [Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e309"), Raw("-0"), Raw("1E400"),
                   Raw("0." + "0" * 400 + "1"), Raw("9" * 5000), Raw("1.0e+308"), Raw("-1e-400")]
HUGE_NUMBERS: list[Any] = [10**30, -(10**30), 1e308, -1e308, 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 2**31,
                           -(2**31) - 1, 10**400, 1.5, -0.0, 5e-324, *NUMBER_LITERALS]
# Text that is valid wherever a string of its length is: what a handler must store and echo safely.
ODD_VALID_TEXT = ["Zoë", "\u202eevil\u202c", "a\u200db", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "e\u0301",
                  "\ufeffBOM", "\u4e2d\u6587\u540d", "\u0627\u0633\u0645", "\u00a0nbsp\u00a0", "' OR 1=1 --",
                  "<script>alert(1)</script>", "../../etc/passwd", "%00", "\\", '"q"', "\u2028l\u2029", "\uffff",
                  "\U0010ffff", "\u0661\u0662\u0663", "NaN", "null", "-1", "1e400", "\U0001f600"]
BAD_TEXT = ["\x00", "a\x00b", "\ud800", "a\udfffb", "\udbff\udfff", "x" * 100_000, "\U0001f600" * 30_000, "", " ",
            "\t\n\r", "\u200b", "\u0085"]
EXTREME_INSTANTS = [
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "9999-12-31T23:59:00+00:00", "0001-01-01T00:00:00Z",
    "1999-12-31T23:59:59+00:00", "2201-01-01T00:00:00+00:00", "2200-12-31T23:59:59-12:00",
    "2000-01-01T00:00:00+14:00", "2030-01-01T00:00:00-23:59", "2030-01-01T00:00:00+24:00", "2030-01-01T10:00:00",
    "2030-02-29T10:00:00+00:00", "2100-02-29T10:00:00+00:00", "2030-01-01T24:00:00Z", "2030-13-01T00:00:00Z",
    "2030-01-01T00:00:60Z", "2030-01-01T10:00:00.9999999999+00:00", "+2030-01-01T10:00:00Z", "20300101T100000Z",
    "1700000000", "2030-01-01T10:00:00 +00:00", "9999-12-31", "0001-01-01"]
VALID_EDGE_INSTANTS = [
    "2000-01-01T00:00:00+00:00", "2200-12-31T23:59:59+00:00", "2000-01-01T13:59:59+14:00",
    "2200-12-31T11:59:59-12:00", "2024-02-29T14:00:00-06:00", "2028-02-29T23:59:59.999999+00:00",
    "2030-03-10T02:30:00-06:00", "2030-03-10T08:30:00Z", "2030-11-03T01:30:00-05:00", "2030-11-03T06:30:00Z",
    "2030-01-01T00:00:00Z", "2030-06-15T15:00:00+00:00", "2030-06-15T15:00:00.123456+05:45"]
EXTREME_DAYS = ["0001-01-01", "9999-12-30", "9999-12-31", "1999-12-31", "2201-01-01", "2023-02-29", "2100-02-29",
                "2030-00-10", "2030-1-1", "30-01-01", "99999-01-01", "-2030-01-01", "2030-01-01T00:00:00+14:00"]
VALID_EDGE_DAYS = ["2000-01-01", "2200-12-31", "2024-02-29", "2000-02-29", "2030-03-10", "2030-11-03"]
BAD_EMAILS = ["a@b", "@example.org", "a@", "x" * 300 + "@example.org", "\ud800@example.org", "a\x00b@example.org",
              "a@[127.0.0.1]", "a@" + "b" * 64 + ".org", "a..b@example.org", "\u202e@example.org", "a@example.org\n"]
VALID_EMAILS = ["\u00fc@ex\u00e4mple.org", "A@EXAMPLE.ORG", "\U0001f600@example.org", "a+b@example.org",
                "x" * 64 + "@example.org", "edge-visitor@example.org"]
WRONG_TYPES: list[Any] = [None, True, False, 0, -1, "", [], {}, [None], {"": None}, "[]", "{}", [[[]]]]


def nested() -> st.SearchStrategy[Raw]:
    return st.one_of(st.sampled_from([deep(1000), deep(1000, "{"), deep(33), deep(32), deep(100_000)]),
                     st.integers(33, 2000).map(deep))


def any_edge() -> st.SearchStrategy[Any]:
    """A value wrong almost anywhere: nesting 10%, numbers 20%, text 30%, dates 20%, wrong types 20%."""
    def pick(n: int) -> st.SearchStrategy[Any]:
        if n < 10:
            return nested()
        if n < 30:
            return st.sampled_from(HUGE_NUMBERS)
        if n < 60:
            return st.sampled_from([*BAD_TEXT, *BAD_EMAILS])
        if n < 80:
            return st.sampled_from([*EXTREME_INSTANTS, *EXTREME_DAYS])
        return st.sampled_from(WRONG_TYPES)

    return st.integers(0, 99).flatmap(pick)


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMAS[schema["$ref"].rsplit("/", 1)[1]]
    return schema


@dataclass
class World:
    """What a drawn request may refer to: real ids, instants in open visiting time, callers."""

    ids: dict[str, list[str]]  # path parameter or field name -> real ids of that kind
    soon: list[str]  # instants a visit can be booked at (all-day windows, a 30-minute option)
    days: list[str]  # local dates around the server's today
    hints: dict[str, list[Any]]  # values that get further than most, for some field names
    token: Callable[[Role], str]  # a fresh credential for a role (an operator may move the test clock)


def valid(schema: dict[str, Any], world: World, name: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """A value that `schema` admits, taken from its edges: bounds, maximum lengths in 4-byte characters,
    the ends of the accepted date range, leap days, DST gaps, real ids."""
    schema = resolve(schema)
    if name in world.ids:
        return st.sampled_from(world.ids[name])
    if name in world.hints:
        hinted = st.sampled_from(world.hints[name])
        return st.one_of(hinted, hinted, hinted, valid(schema, world, "", depth))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if resolve(s).get("type") != "null"] or schema[key]
            return st.one_of(*(valid(s, world, name, depth + 1) for s in options))
    if "allOf" in schema:
        return valid(schema["allOf"][0], world, name, depth + 1)
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(list(schema["enum"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or kind
        return st.one_of(*(valid({**schema, "type": k}, world, name, depth) for k in kinds))
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        bounds = [b for b in (schema.get("minimum"), schema.get("maximum")) if b is not None]
        if lo is None and hi is None:  # unbounded: anything JSON can say
            return st.sampled_from([0, -1, 1, 10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 10**400, 1e308])
        ints = st.integers(int(lo) if lo is not None else -(10**30), int(hi) if hi is not None else 10**30)
        return st.one_of(st.sampled_from(bounds), ints)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return st.sampled_from(world.soon * 3 + VALID_EDGE_INSTANTS)
        if fmt == "date":
            return st.sampled_from(world.days * 2 + VALID_EDGE_DAYS)
        if fmt == "email":
            return st.sampled_from(VALID_EMAILS)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= 300)
        return strings(schema)
    if kind == "array" or "items" in schema:
        hi = min(schema.get("maxItems", 3), 3)
        lo = min(schema.get("minItems", 0), hi)
        item = valid(schema.get("items", {}), world, "", depth + 1)
        return st.one_of(st.lists(item, min_size=lo, max_size=hi),
                         st.builds(lambda v: [v] * schema.get("maxItems", 1000), item))
    if kind == "object" or "properties" in schema:
        return objects(schema, world, depth, bad=False)
    return st.sampled_from(WRONG_TYPES[1:])  # an unconstrained value


def strings(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    lo = schema.get("minLength", 0)
    hi = schema.get("maxLength", 1000)
    exact = ["x" * hi, "\U0001f600" * hi, " " * (hi - 1) + "x", "e\u0301" * (hi // 2), "x" * max(lo, 1)]
    fits = [t for t in ODD_VALID_TEXT if lo <= len(t) <= hi]
    return st.one_of(st.sampled_from(exact + fits),
                     st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=max(lo, 1),
                             max_size=min(hi, 30)))


def wrong(schema: dict[str, Any], world: World, name: str = "", depth: int = 0) -> st.SearchStrategy[Any]:
    """A value `schema` refuses (or should): just past its bounds, or anything from the edges."""
    schema = resolve(schema)
    specific: list[Any] = []
    if name in world.ids:  # another id: unknown, of another kind, or nearly the real one
        real = world.ids[name][0]
        specific = [str(uuid.UUID(int=0)), real.upper(), real + " ", real[:-1], *(v[0] for v in world.ids.values())]
    elif schema.get("type") in ("integer", "number"):
        specific = [b + d for b in (schema.get("minimum"), schema.get("maximum")) if b is not None
                    for d in (-1, 1)] + [0.5, "12", True]
    elif schema.get("type") == "string":
        hi = schema.get("maxLength")
        specific = [] if hi is None else ["x" * (hi + 1), "\U0001f600" * (hi + 1)]
        specific += {"date-time": EXTREME_INSTANTS, "date": EXTREME_DAYS, "email": BAD_EMAILS}.get(
            schema.get("format", ""), [])
    elif "enum" in schema:
        specific = [str(v).upper() + "\u200d" for v in schema["enum"]]
    elif schema.get("type") == "array" and depth < 3:
        item = resolve(schema.get("items", {}))
        over = schema.get("maxItems")
        return st.one_of(any_edge(), st.lists(wrong(item, world, "", depth + 1), min_size=1, max_size=2),
                         st.just([0] * ((over or 10_000) + 1)))
    elif (schema.get("type") == "object" or "properties" in schema) and depth < 3:
        return st.one_of(any_edge(), objects(schema, world, depth + 1, bad=True))
    return st.one_of(st.sampled_from(specific), any_edge()) if specific else any_edge()


def objects(schema: dict[str, Any], world: World, depth: int, bad: bool) -> st.SearchStrategy[dict[str, Any]]:
    """An object of valid properties; with `bad`, one of them (or a missing required one, or an
    unknown extra one) is wrong."""
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any] = {}
        names = [n for n in props if n in required or draw(st.integers(0, 3)) > 0]
        culprit = draw(st.integers(0, len(names) + 1)) if bad else -1
        for i, name in enumerate(names):
            strategy = wrong if i == culprit else valid
            out[name] = draw(strategy(props[name], world, name, depth + 1))
        if culprit == len(names) and required:
            out.pop(draw(st.sampled_from(sorted(required))))
        elif culprit == len(names) + 1 or (bad and not names):
            key = draw(st.sampled_from(["extra", "__proto__", "\ud800", "", "id", "role", "x" * 1000]))
            out[key] = draw(any_edge())
        return out

    return build()


# ------------------------------------------------------------------ the server

@dataclass
class LiveServer:
    host: str
    port: int
    loop: asyncio.AbstractEventLoop
    ctx: AppContext
    password_hash: str

    def world(self) -> World:
        """A fresh facility with one of everything (each operation gets its own: earlier operations
        cancel, move and decide what later ones would need)."""
        return asyncio.run_coroutine_threadsafe(seed_world(self), self.loop).result(60)


async def seed_world(server: LiveServer) -> World:
    ctx = server.ctx
    now = ctx.clock.now()
    tag = uuid.uuid4().hex[:8]
    users: dict[Role, User] = {}

    async def add_user(role: Role, facility_id: str | None = None, nth: int = 1) -> User:
        async with ctx.sessions() as session, session.begin():
            user = User(email=f"edge-{role.value}{nth}-{tag}@example.org", password_hash=server.password_hash,
                        role=role.value, legal_name=f"Edge {role.value}", facility_id=facility_id, created_at=now,
                        email_confirmed_at=now)
            session.add(user)
        return user

    for role in (Role.OPERATOR, Role.VISITOR, Role.ATTORNEY):
        users[role] = await add_user(role)
    ids = await seed_facility(ctx.sessions, tag, now, users[Role.VISITOR], users[Role.ATTORNEY])
    for role in (Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR):
        users[role] = await add_user(role, ids["facility_id"])
    # Someone else's requests wait for a decision (the seeded ones are decided below).
    applicant, attorney2 = await add_user(Role.VISITOR, nth=2), await add_user(Role.ATTORNEY, nth=2)
    pending_access = AccessRequest(visitor_id=applicant.id, facility_id=ids["facility_id"], created_at=now)
    pending_bar = BarVerification(attorney_id=attorney2.id, facility_id=ids["facility_id"], bar_number="B-2",
                                  bar_state="IL", created_at=now)
    visits = [ids["visit_id"]]
    media = b"\x1a\x45\xdf\xa3" + bytes(60)
    async with ctx.sessions() as session, session.begin():
        # The attorney may book privileged visits there too.
        await session.execute(update(BarVerification).where(BarVerification.id == ids["verification_id"])
                              .values(status="verified", decided_at=now))
        session.add_all([AccessRequest(visitor_id=users[Role.ATTORNEY].id, facility_id=ids["facility_id"],
                                       status="approved", created_at=now), pending_access, pending_bar])
        # A visit in progress, a privileged one, one waiting for review.
        seeded = await session.get(Visit, ids["visit_id"])
        assert seeded is not None
        for booker, kind, start, status in ((Role.VISITOR, "social", now - timedelta(minutes=5), "scheduled"),
                                            (Role.ATTORNEY, "privileged", now + timedelta(days=3), "scheduled"),
                                            (Role.VISITOR, "social", now + timedelta(days=4), "pending_review")):
            visit = Visit(**{c.key: getattr(seeded, c.key) for c in Visit.__table__.columns if c.key != "id"})
            visit.booker_id, visit.visit_type, visit.status = users[booker].id, kind, status
            visit.starts_at, visit.ends_at = start, start + timedelta(minutes=30)
            session.add(visit)
            await session.flush()
            visits.append(visit.id)
        # The first visit has a recording of one file.
        session.add(Recording(visit_id=ids["visit_id"], facility_id=ids["facility_id"],
                              housing_unit_id=ids["unit_id"], resident_id=ids["resident_id"],
                              booker_id=users[Role.VISITOR].id, started_at=now, ended_at=now,
                              signed_manifest={"document": {"files": []}}, created_at=now))
        await session.flush()
        session.add(RecordingFile(visit_id=ids["visit_id"], name="a.webm", party="visitor", media_type="video/webm",
                                  size_bytes=len(media), sha256=hashlib.sha256(media).hexdigest()))
    folder = ctx.settings.recordings_dir / ids["visit_id"]
    folder.mkdir(parents=True)
    (folder / "a.webm").write_bytes(media)

    principals = {role: Principal(user.id, role, user.facility_id) for role, user in users.items()}
    principals[Role.KIOSK] = Principal(ids["kiosk_id"], Role.KIOSK, ids["facility_id"], ids["unit_id"])

    def token(role: Role) -> str:
        if role is Role.MEDIA:
            return ctx.media_secret
        return ctx.access_tokens.issue(principals[role], ctx.clock.now())[0]

    choices = {name: [value] for name, value in ids.items()}
    choices.update(visit_id=visits, name=["a.webm"], verification_id=[pending_bar.id, ids["verification_id"]],
                   request_id=[pending_access.id, ids["credit_request_id"], ids["request_id"]],
                   user_id=[users[Role.VISITOR].id], booker_id=[users[Role.VISITOR].id],
                   attorney_id=[users[Role.ATTORNEY].id])
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    soon = [(midnight + timedelta(days=d, hours=h)).isoformat() for d in (2, 3, 9) for h in (15, 18)]
    days = [(now + timedelta(days=d)).date().isoformat() for d in (0, 1, 6)]
    hints: dict[str, list[Any]] = {
        "length_minutes": [30], "visit_type": ["social"], "email": [users[Role.VISITOR].email],
        "card_token": ["tok_visa", "tok_chargeDeclined", "4242 4242 4242 4242"], "booking_number": [f"{tag}-1"],
        "timezone": ["America/Chicago", "Pacific/Kiritimati", "Etc/GMT+12", "Pacific/Chatham", "Asia/Kathmandu",
                     "UTC", "Europe/London"],
        "date_of_birth": ["1900-01-01", "2000-02-29", (now - timedelta(days=1)).date().isoformat()],
        "role": ["visitor"], "bar_number": [None], "bar_state": [None], "password": ["x" * 12],
        "access": [playback_token(ctx, ids["visit_id"], "a.webm", users[Role.INVESTIGATOR].id, now)]}
    return World(choices, soon, days, hints, token)


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz-edges")
    db_path = data_dir / "openvisit.sqlite3"
    cfg = Settings(mode=Mode.TEST, data_dir=data_dir, database_url=f"sqlite+aiosqlite:///{db_path}")
    loop = uvloop.new_event_loop()
    started = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        engine = make_engine(cfg.effective_database_url)
        await upgrade(engine)
        await engine.dispose()
        app = create_app(cfg, run_sweeper=False)
        runner, port = await start_site(app, "127.0.0.1", 0)
        state.update(runner=runner, port=port, ctx=app[CONTEXT])
        started.set()

    def serve() -> None:
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(60), "server did not start"
    yield LiveServer("127.0.0.1", state["port"], loop, state["ctx"], hash_password("x" * 12))

    async def stop() -> None:
        await state["runner"].cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


class Client:
    """http.client on one kept-alive connection: raw bytes in the target and the headers."""

    def __init__(self, server: LiveServer) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=60)

    def request(self, method: str, target: str, headers: dict[str, bytes], body: bytes | None
                ) -> tuple[int, dict[str, str], bytes]:
        for attempt in (1, 2):
            try:
                self.conn.putrequest(method, target, skip_accept_encoding=True)
                for name, value in headers.items():
                    self.conn.putheader(name, value)
                if body is not None:
                    self.conn.putheader("Content-Length", str(len(body)))
                self.conn.endheaders(body)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.conn.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.conn.close()  # the server closed a kept-alive connection: once more on a new one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def world(live_server: LiveServer) -> World:
    return live_server.world()


@pytest.fixture(scope="module")
def client(live_server: LiveServer) -> Iterator[Client]:
    c = Client(live_server)
    yield c
    c.close()


# ------------------------------------------------------------------ requests

def text_of(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def pct(value: Any) -> str:
    """Percent-encoded UTF-8 (lone surrogates as their invalid UTF-8 bytes)."""
    return quote(text_of(value).encode("utf-8", "surrogatepass"), safe="")


BAD_AUTH = ["Bearer", "Bearer ", "bearer  {t}", "Basic dXNlcjpwYXNz", "Bearer {t}x", "Bearer {t} {t}", "{t}",
            "Bearer " + "a" * 8000, "Bearer \U0001f600", "Bearer \u202e{t}", "Bearer e30.e30.", "Bearer ...",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwicm9sZSI6Im9wZXJhdG9yIiwiZXhwIjo5OTk5OTk5OTk5OTl9.",
            "Bearer \x00", "Bearer \xff\xfe", "Bearer \u0100", "Bearer {t}\x00", "Bearer\t{t}"]
BAD_IDEMPOTENCY_KEYS = ["", "short", "x" * 201, "k" * 200, "\U0001f600" * 8, "key-\ud800-xxxx", "key with space",
                        "key-\x00-xxxxx", "\xff" * 10, "key-" + "\u202e" * 8, "key-" + "\x7f" * 8]
ODD_CONTENT_TYPES = [b"application/json; charset=\xff", b"application/json; charset=utf-16", b"text/plain",
                     b"application/problem+json", b"application/merge-patch+json", b"multipart/form-data; boundary=",
                     b"application/x-www-form-urlencoded", b"", b"application/json;;;", b"\xed\xa0\x80/json",
                     b"image/png", b"text/csv; charset=latin-1", b"application/octet-stream"]
RANGES = ["bytes=0-", "bytes=-1", "bytes=0-0", "bytes=5-1", "bytes=99999999999999999999999-", "bytes=-0",
          "bytes=0-1,2-3", "bytes=" + "0-1," * 500 + "0-1", "bytes=-99999999999999999999", "items=0-1", "bytes=a-b",
          "bytes=64-", "bytes=63-63", "bytes=\xff-"]


@dataclass
class Drawn:
    method: str
    target: str
    headers: dict[str, bytes]
    body: bytes | None

    def __str__(self) -> str:
        shown = {k: v[:80] for k, v in self.headers.items() if k != "Authorization"}
        return f"{self.method} {self.target[:300]} {shown} body={(self.body or b'')[:300]!r}"


@st.composite
def edge_request(draw: st.DrawFn, method: str, path: str, op: dict[str, Any], world: World) -> Drawn:
    """A request to one operation: 55% valid but extreme everywhere, 35% one wrong part (a body
    field, a path or query parameter, a header), 10% wild (a whole body, several parts)."""
    params: list[dict[str, Any]] = op.get("parameters", [])
    content = op.get("requestBody", {}).get("content", {})
    roles = ROLES[(method, path)]
    parts = [p["name"] for p in params] + ["Authorization"] + (["body"] * 3 if content else [])
    plan = draw(st.integers(0, 99))
    wild = plan >= 90
    culprit = draw(st.sampled_from(parts)) if 55 <= plan < 90 else None

    def is_bad(part: str) -> bool:
        return part == culprit or (wild and draw(st.integers(0, 2)) == 0)

    target = path
    query: list[tuple[str, Any]] = []
    headers: dict[str, bytes] = {}
    for p in params:
        name, bad = p["name"], is_bad(p["name"])
        if p["in"] == "path":
            value = draw(wrong(p["schema"], world, name) if bad else valid(p["schema"], world, name))
            target = target.replace("{" + name + "}", pct(value))
        elif p["in"] == "query":
            if bad or p.get("required") or draw(st.booleans()):
                query.append((name, draw(wrong(p["schema"], world, name) if bad else valid(p["schema"], world, name))))
            if bad and draw(st.integers(0, 3)) == 0:  # the same parameter twice
                query.append((name, draw(valid(p["schema"], world, name))))
        elif p["in"] == "header" and name == "Idempotency-Key":
            key = draw(st.sampled_from(BAD_IDEMPOTENCY_KEYS)) if bad else f"edge-{uuid.uuid4().hex}"
            headers[name] = key.encode("utf-8", "surrogatepass")
    if wild and draw(st.booleans()):
        query.append((draw(st.sampled_from(["extra", "", "\ud800", "from[]", "a" * 1000])), draw(any_edge())))
    if query:
        target += "?" + "&".join(f"{pct(k)}={pct(v)}" for k, v in query)

    if is_bad("Authorization"):
        token = world.token(draw(st.sampled_from(roles or [Role.VISITOR])))
        headers["Authorization"] = draw(st.sampled_from(BAD_AUTH)).replace("{t}", token).encode()
    elif roles:
        headers["Authorization"] = f"Bearer {world.token(draw(st.sampled_from(roles)))}".encode()

    if method == "GET" and draw(st.integers(0, 3)) == 0:
        headers["Range"] = draw(st.sampled_from(RANGES)).encode("latin-1")
    body: bytes | None = None
    if "application/json" in content:
        schema = resolve(content["application/json"]["schema"])
        bad = is_bad("body")
        whole = bad and draw(st.integers(0, 3)) == 0
        body = to_json(draw(any_edge() if whole else objects(schema, world, 0, bad=bad)))
        headers["Content-Type"] = b"application/json"
    elif content:
        ctype = draw(st.sampled_from(sorted(content)))
        headers["Content-Type"] = ctype.encode()
        body = draw(raw_bodies(ctype, world))
    elif method != "GET" and wild:
        body = to_json(draw(any_edge()))
        headers["Content-Type"] = b"application/json"
    if body is not None and wild and draw(st.booleans()):
        headers["Content-Type"] = draw(st.sampled_from(ODD_CONTENT_TYPES))
    return Drawn(method, target, headers, body)


def image(fmt: str, size: tuple[int, int], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format=fmt)
    return buf.getvalue()


PNG_HEAD = b"\x89PNG\r\n\x1a\n"
IMAGES = [image("PNG", (16, 16)), image("JPEG", (16, 16)), image("WEBP", (16, 16)), image("PNG", (8000, 16), "1"),
          image("PNG", (8001, 16), "1"), image("PNG", (64, 48), "RGBA"), image("PNG", (16, 16), "I;16"),
          image("JPEG", (16, 8000), "L"), image("PNG", (1, 1)), image("GIF", (16, 16), "P"),
          image("PNG", (16, 16), "LA"), image("JPEG", (16, 16), "CMYK")]
NOT_IMAGES = [b"", PNG_HEAD, PNG_HEAD + b"<html>", b"\xff\xd8\xff", b"\xff\xd8\xff" + b"\x00" * 100,
              b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a", b"\x00" * 1024, IMAGES[0][:-12], IMAGES[1][:30],
              PNG_HEAD + b"\x00\x00\x00\rIHDR\xff\xff\xff\xff\xff\xff\xff\xff\x08\x02\x00\x00\x00"]
CSV_HEADERS = ["booking_number,full_name,housing_unit", "\ufeffbooking_number,full_name,housing_unit",
               "BOOKING_NUMBER, full_name ,housing_unit", "booking_number,full_name,housing_unit,extra", "",
               "booking_number,booking_number,full_name,housing_unit", "a,a,a,a", '"']


def raw_bodies(ctype: str, world: World) -> st.SearchStrategy[bytes]:
    if ctype == "text/csv":
        cell = st.sampled_from([*ODD_VALID_TEXT, *BAD_TEXT[:5], *EXTREME_DAYS, "A", "B-1", "Name", "\"a,b\"",
                                "=cmd|' /C calc'!A0", "x" * 201])
        good_row = st.builds(lambda n, name: [n, name, "A"], st.sampled_from(["B-1", "b-2", "x" * 32, "\u0661"]),
                             cell)
        rows = st.lists(st.one_of(good_row, good_row, st.lists(cell, max_size=5)), max_size=4)
        header = st.one_of(st.just(CSV_HEADERS[0]), st.sampled_from(CSV_HEADERS))
        return st.builds(lambda h, r, nl: nl.join([h, *(",".join(c) for c in r)]).encode("utf-8", "surrogatepass"),
                         header, rows, st.sampled_from(["\r\n", "\n", "\r"]))
    return st.one_of(st.sampled_from(IMAGES), st.sampled_from(NOT_IMAGES))


def check(drawn: Drawn, status: int, headers: dict[str, str], data: bytes) -> None:
    assert status < 500, f"{drawn}: {status} {data[:2000]!r}"
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/problem+json"), f"{drawn}: {data[:500]!r}"
        problem = json.loads(data)
        assert problem["status"] == status, f"{drawn}: {problem}"
        for key in ("type", "title", "detail"):
            assert isinstance(problem.get(key), str) and problem[key], f"{drawn}: no {key} in {problem}"


def test_the_served_document_is_the_one_fuzzed(client: Client) -> None:
    status, _, data = client.request("GET", "/v1/openapi.json", {}, None)
    assert status == 200 and json.loads(data)["paths"].keys() == OPENAPI["paths"].keys()
    assert {(m, p) for m, p, _ in OPERATIONS} == set(ROLES), "every declared route is in the document"


# Header bytes that are not UTF-8 reach handlers as lone surrogates (aiohttp decodes header values
# with surrogateescape): a str that cannot be encoded again.
NOT_UTF8_TOKENS = [b"Bearer \xed\xa0\x80", b"Bearer \xff\xfe", b"Bearer abc.def\xe9.ghi"]


def test_an_authorization_header_that_is_not_utf8_is_401(world: World, client: Client) -> None:
    """Found by the fuzz (a 500 from PyJWT encoding a lone surrogate); now a 401."""
    failures = []
    for path in ("/v1/me", "/v1/internal/media-heartbeat"):
        for token in NOT_UTF8_TOKENS:
            method = "GET" if path == "/v1/me" else "POST"
            drawn = Drawn(method, path, {"Authorization": token, "Content-Type": b"application/json"},
                          b'{"node_id": "n"}' if method == "POST" else None)
            status, headers, answer = client.request(method, path, drawn.headers, drawn.body)
            if status != 401:
                failures.append(f"{drawn}: {status} {answer[:200]!r}")
            else:
                check(drawn, status, headers, answer)
    assert not failures, failures


@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
@SETTINGS
@given(data=st.data())
def test_edge_values_never_5xx(method: str, path: str, op: dict[str, Any], world: World, client: Client,
                               data: st.DataObject) -> None:
    drawn = data.draw(edge_request(method, path, op, world), label="request")
    status, headers, answer = client.request(drawn.method, drawn.target, drawn.headers, drawn.body)
    check(drawn, status, headers, answer)
    if os.environ.get("EDGE_STATS"):  # a file to append "operation, status, problem type, detail" lines to
        problem = json.loads(answer) if status >= 400 else {}
        with open(os.environ["EDGE_STATS"], "a") as f:
            f.write(f"{method} {path}\t{status}\t{problem.get('type', '').rsplit('/', 1)[-1]}\t"
                    f"{problem.get('detail', '')[:150]}\t{(drawn.body or b'')[:300]!r}\n")
