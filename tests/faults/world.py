"""A world for fault tests, built through the real API of a running `openvisit serve` (test mode):
an operator (created with the CLI), a facility with all-day windows and 5-minute social visits,
residents, kiosks, approved visitors, and visits booked, paid, checked in and started by moving
the test clock.

Plain blocking HTTP (urllib): the tests drive processes, they do not share an event loop with them.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.faults.processes import ServerEnv
from tests.support import PNG

PASSWORD = "fault-test-password"
ALL_DAY = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
VISIT_MINUTES = 5
PRICE_CENTS = 500


class HttpError(Exception):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class Caller:
    """One signed-in caller: `caller.get(path)`, `caller.post(path, body)`."""

    base: str
    token: str | None = None
    id: str = ""

    def request(self, method: str, path: str, body: Any = None, *, data: bytes | None = None,
                headers: dict[str, str] | None = None, expect: tuple[int, ...] = (200, 201),
                timeout: float = 15) -> Any:
        h = dict(headers or {})
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        if status not in expect:
            raise HttpError(method, path, status, parsed)
        return parsed

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)


def login(base: str, email: str, password: str = PASSWORD) -> Caller:
    answer = Caller(base).post("/v1/auth/login", {"email": email, "password": password})
    return Caller(base, answer["access_token"], answer.get("user_id", "") or "")


@dataclass
class Visit:
    id: str
    visitor: Caller
    kiosk: Caller
    resident_id: str
    starts_at: datetime
    ends_at: datetime
    price_cents: int
    balance_before: int = 0


@dataclass
class World:
    base: str
    env: ServerEnv
    operator: Caller
    facility_id: str
    unit_id: str
    kiosks: list[Caller]
    residents: list[str]
    visitors: list[Caller] = field(default_factory=list)

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        return datetime.fromisoformat(self.operator.get("/v1/test-clock")["now"])

    def advance(self, seconds: int) -> dict[str, Any]:
        result: dict[str, Any] = self.operator.post("/v1/test-clock/advance", {"seconds": int(seconds)})
        return result

    def advance_to(self, instant: datetime) -> dict[str, Any]:
        seconds = math.ceil((instant - self.now()).total_seconds())
        assert seconds > 0, f"{instant} is not in the future"
        return self.advance(seconds)

    def sweep(self) -> dict[str, Any]:
        result: dict[str, Any] = self.operator.post("/v1/test-clock/sweep")
        return result

    # ------------------------------------------------------------------ visits

    def visit(self, v: Visit) -> dict[str, Any]:
        result: dict[str, Any] = v.visitor.get(f"/v1/visits/{v.id}")
        return result

    def balance(self, visitor: Caller) -> int:
        return int(visitor.get("/v1/me/balance")["available_cents"])

    def book_started(self, count: int, *, lead_seconds: int = 20) -> list[Visit]:
        """`count` 5-minute social visits (one resident and one visitor each) starting together
        `lead_seconds` from the test clock's now; the clock is then moved just past the start
        and each resident checked in at a kiosk. Returns them started."""
        now = self.now()
        start = (now + timedelta(seconds=lead_seconds)).replace(microsecond=0) + timedelta(seconds=1)
        visits: list[Visit] = []
        for i in range(count):
            visitor = self.visitors[i]
            before = self.balance(visitor)
            body = {"resident_id": self.residents[i], "starts_at": start.isoformat(), "length_minutes": VISIT_MINUTES,
                    "visit_type": "social", "payment": {"card_token": "tok_visa", "use_credit": False}}
            got = visitor.post("/v1/visits", body, headers={"Idempotency-Key": secrets.token_hex(12)})
            assert got["status"] == "scheduled", got
            visits.append(Visit(got["id"], visitor, self.kiosks[i % len(self.kiosks)], self.residents[i],
                                datetime.fromisoformat(got["starts_at"]), datetime.fromisoformat(got["ends_at"]),
                                int(got["price_cents"]), before))
        self.advance_to(start + timedelta(seconds=1))
        for v in visits:
            v.kiosk.post(f"/v1/visits/{v.id}/check-in")
        return visits

    def wait_visit(self, v: Visit, *, until: str | None = None, field_set: str | None = None,
                   timeout: float = 15) -> dict[str, Any]:
        """Poll the visit until its status is `until` or `field_set` is non-null (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.visit(v)
            if (until is None or got["status"] == until) and (field_set is None or got.get(field_set) is not None):
                return got
            if time.monotonic() >= deadline:
                return got
            time.sleep(0.2)

    # ------------------------------------------------------------------ money

    def ledger_problems(self) -> list[str]:
        """Every ledger transaction must sum to zero (double entry, M1); read straight from SQLite."""
        con = sqlite3.connect(f"file:{self.env.database}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT transaction_id, SUM(amount_cents) FROM ledger_entries "
                               "GROUP BY transaction_id HAVING SUM(amount_cents) != 0").fetchall()
            total = con.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM ledger_entries").fetchone()[0]
        finally:
            con.close()
        problems = [f"transaction {tx} sums to {amount}" for tx, amount in rows]
        if total != 0:
            problems.append(f"all entries sum to {total}")
        return problems

    def credits_for(self, visit_id: str) -> list[tuple[int, str]]:
        """Credit lots issued for a visit: (amount_cents, rule), read from SQLite."""
        con = sqlite3.connect(f"file:{self.env.database}?mode=ro", uri=True, timeout=10)
        try:
            rows = con.execute("SELECT amount_cents, rule FROM credit_lots WHERE visit_id = ?", (visit_id,)).fetchall()
        finally:
            con.close()
        return [(int(a), str(r)) for a, r in rows]


def build_world(base: str, env: ServerEnv, *, pairs: int = 2) -> World:
    """Operator (CLI), facility (UTC, all-day windows, lead time 0, 5-minute social visits at 5.00),
    one housing unit with `pairs` kiosks and residents, `pairs` approved visitors."""
    email = f"operator-{secrets.token_hex(4)}@faults.example.org"
    done = env.cli("create-operator", "--email", email, "--name", "Fault Operator", "--password", PASSWORD)
    assert done.returncode == 0, done.stderr + done.stdout
    operator = login(base, email)
    facility = operator.post("/v1/facilities", {"name": f"Fault Facility {secrets.token_hex(3)}", "timezone": "UTC",
                                                "min_lead_minutes": 0, "booking_horizon_days": 30})
    fid = facility["id"]
    unit = operator.post(f"/v1/facilities/{fid}/housing-units", {"name": "A", "kiosk_count": pairs})
    operator.put(f"/v1/facilities/{fid}/housing-units/{unit['id']}/windows", {"windows": ALL_DAY})
    operator.put(f"/v1/facilities/{fid}/session-options", {"options": [
        {"visit_type": "social", "length_minutes": VISIT_MINUTES, "price_cents": PRICE_CENTS}]})
    kiosks: list[Caller] = []
    residents: list[str] = []
    for i in range(pairs):
        kiosk = operator.post(f"/v1/facilities/{fid}/kiosks", {"housing_unit_id": unit["id"], "name": f"Kiosk {i}"})
        token = Caller(base).post("/v1/auth/kiosk", {"kiosk_id": kiosk["id"], "secret": kiosk["secret"]})
        kiosks.append(Caller(base, token["access_token"], kiosk["id"]))
        resident = operator.post(f"/v1/facilities/{fid}/residents", {
            "booking_number": f"F-{i + 1}-{secrets.token_hex(2)}", "full_name": f"Resident {i + 1}",
            "housing_unit_id": unit["id"]})
        residents.append(resident["id"])
    world = World(base, env, operator, fid, unit["id"], kiosks, residents)
    for i in range(pairs):
        world.visitors.append(approved_visitor(world, i))
    return world


def approved_visitor(world: World, n: int) -> Caller:
    email = f"visitor{n}-{secrets.token_hex(4)}@faults.example.org"
    anonymous = Caller(world.base)
    anonymous.request("POST", "/v1/accounts", expect=(202,), body={
        "role": "visitor", "email": email, "password": PASSWORD, "legal_name": f"Fault Visitor {n}",
        "postal_address": "1 Main Street, Springfield, IL 62701", "date_of_birth": "1980-05-17",
        "phone": "+1 217 555 0100"})
    [mail] = anonymous.get("/v1/demo/mail?" + urlencode({"to": email, "kind": "confirm-email"}))
    anonymous.post("/v1/auth/confirm-email", {"token": mail["body"].split("confirmation code: ")[1].split()[0]})
    visitor = login(world.base, email)
    visitor.id = visitor.get("/v1/me")["id"]
    visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})
    request = visitor.post(f"/v1/facilities/{world.facility_id}/access-requests")
    world.operator.post(f"/v1/facilities/{world.facility_id}/access-requests/{request['id']}/decision",
                        {"decision": "approve"})
    return visitor


def sqlite_path(env: ServerEnv) -> Path:
    return env.database
