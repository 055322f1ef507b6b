"""Build a load-test facility over the public API of any deployment, and write the world JSON the
locustfile reads:

    python -m loadtests.provision --target https://staging.example.org \\
        --operator-email ops@example.org --operator-password ... [--operator-totp-secret BASE32] \\
        --pairs 20 --bookers 10 --officers 2 --investigators 2 --out world.json

It creates (names carry a run tag, so runs never collide): a facility in UTC with all-day windows
(A2), no lead time (A5), automatic approval (A7), a 30-minute social length; one housing unit whose
kiosks (A4) hold the live visits, one for the bookers' residents; residents and kiosks; visitors who
sign up, confirm their email (through the demo outbox, or `--visitors-file` with already confirmed
accounts on a production target), upload a photo ID and are approved (V1); officers and
investigators (enrolled in two-step sign-in when the target requires it, secrets kept in the world
file); and one booked, card-paid (test gateway token) social visit per pair.

Time: when the target has a movable clock (demo or test mode), the visits start a minute ahead and
the clock is moved to just past their start, so they are live at once and for `--visit-minutes`.
Otherwise they start `--start-in` seconds from now (joining is open from the lobby, S1).

Recordings: with a movable clock, `--recorded-visits N` first holds N short visits with real media
and ends them (loadtests/recorded.py), so the investigators have recordings to play at once; their
ids are in the world file (`recordings`)."""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import secrets
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from loadtests.api import Api, ApiError, login, totp_code
from loadtests.recorded import RecordedVisit, RecordingFailed, record, wait_for_recording
from loadtests.world import Account, Kiosk, LiveVisit, World

ALL_DAY = [{"weekday": d, "start": "00:00", "end": "24:00"} for d in range(7)]
BOOKING_LENGTH = 30
PRICE_CENTS = 500


def photo_id() -> bytes:
    """A small real PNG (the API re-encodes photo IDs and refuses anything that is not an image)."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (96, 64), (180, 160, 140)).save(out, format="PNG")
    return out.getvalue()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Provisioner:
    def __init__(self, api: Api, operator: Api, tag: str, password: str) -> None:
        self.api = api
        self.operator = operator
        self.tag = tag
        self.password = password
        self.png = photo_id()

    def facility(self, pairs: int, bookers: int, visit_minutes: int) -> tuple[str, str, str]:
        fid = self.operator.post("/v1/facilities", {
            "name": f"Load test {self.tag}", "timezone": "UTC", "min_lead_minutes": 0, "booking_horizon_days": 60,
            "weekly_visit_limit": 100, "review_mode": "auto"})["id"]
        lengths = sorted({BOOKING_LENGTH, visit_minutes})
        self.operator.put(f"/v1/facilities/{fid}/session-options", {"options": [
            {"visit_type": "social", "length_minutes": n, "price_cents": PRICE_CENTS} for n in lengths]})
        units = []
        for name, kiosks in (("Visits", max(1, pairs)), ("Bookings", max(1, bookers))):
            unit = self.operator.post(f"/v1/facilities/{fid}/housing-units", {"name": name, "kiosk_count": kiosks})
            self.operator.put(f"/v1/facilities/{fid}/housing-units/{unit['id']}/windows", {"windows": ALL_DAY})
            units.append(unit["id"])
        return fid, units[0], units[1]

    def resident(self, fid: str, unit: str, n: int, prefix: str) -> str:
        return str(self.operator.post(f"/v1/facilities/{fid}/residents", {
            "booking_number": f"{prefix}-{self.tag}-{n}", "full_name": f"Load Resident {prefix}{n}",
            "housing_unit_id": unit})["id"])

    def kiosk(self, fid: str, unit: str, n: int | str) -> Kiosk:
        made = self.operator.post(f"/v1/facilities/{fid}/kiosks", {"housing_unit_id": unit, "name": f"Kiosk {n}"})
        return Kiosk(made["id"], made["secret"])

    def visitor(self, fid: str, n: int, given: Account | None) -> Account:
        """An approved visitor (V1): signed up and confirmed through the demo outbox, or given."""
        if given is None:
            email = f"load-{self.tag}-{n}@loadtest.openvisit.org"
            anonymous = self.api.as_("")
            anonymous.post("/v1/accounts", {
                "role": "visitor", "email": email, "password": self.password, "legal_name": f"Load Visitor {n}",
                "postal_address": "1 Main Street, Springfield, IL 62701", "date_of_birth": "1980-05-17",
                "phone": "+1 217 555 0100"})
            mails = anonymous.get("/v1/demo/mail?" + urlencode({"to": email, "kind": "confirm-email"}))
            code = mails[-1]["body"].split("confirmation code: ")[1].split()[0]
            anonymous.post("/v1/auth/confirm-email", {"token": code})
            given = Account(email, self.password)
        me = login(self.api, given.email, given.password)
        me.put("/v1/me/photo-id", data=self.png, headers={"Content-Type": "image/png"})
        try:
            request = me.post(f"/v1/facilities/{fid}/access-requests")
        except ApiError as exc:
            if exc.status != 409:  # already asked (a reused account)
                raise
        else:
            self.operator.post(f"/v1/facilities/{fid}/access-requests/{request['id']}/decision",
                               {"decision": "approve"})
        return given

    def staff(self, fid: str, role: str, n: int | str) -> Account:
        """An officer or investigator; enrolled in two-step sign-in if the target requires it."""
        account = Account(f"load-{role}-{self.tag}-{n}@loadtest.openvisit.org", self.password)
        self.operator.post(f"/v1/facilities/{fid}/staff", {"email": account.email, "legal_name": f"Load {role} {n}",
                                                           "role": role, "password": account.password})
        me = login(self.api, account.email, account.password)
        probe = f"/v1/facilities/{fid}/live-visits" if role == "officer" else f"/v1/facilities/{fid}/recordings"
        try:
            me.get(probe)
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
            setup = me.post("/v1/me/second-factor/setup")
            me.post("/v1/me/second-factor/confirm", {"code": totp_code(setup["secret"])})
            account.totp_secret = setup["secret"]
        return account

    def book(self, visitor: Account, resident: str, starts_at: datetime, minutes: int) -> dict[str, Any]:
        me = login(self.api, visitor.email, visitor.password)
        visit: dict[str, Any] = me.post("/v1/visits", {
            "resident_id": resident, "starts_at": starts_at.isoformat(), "length_minutes": minutes,
            "visit_type": "social", "payment": {"card_token": "tok_visa", "use_credit": False}},
            headers={"Idempotency-Key": f"load-{self.tag}-{secrets.token_hex(8)}"})
        return visit


def read_visitors(path: Path | None) -> list[Account]:
    """`email,password` per line: confirmed visitor accounts for targets without the demo outbox."""
    if path is None:
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            email, password = line.strip().split(",", 1)
            out.append(Account(email.strip(), password.strip()))
    return out


def provision(args: argparse.Namespace) -> World:
    api = Api(args.target.rstrip("/"), insecure=args.insecure)
    operator = login(api, args.operator_email, args.operator_password, args.operator_totp_secret)
    tag = args.tag or secrets.token_hex(3)
    p = Provisioner(api, operator, tag, secrets.token_urlsafe(12))
    given = read_visitors(args.visitors_file)
    fid, visit_unit, booking_unit = p.facility(args.pairs, args.bookers, args.visit_minutes)
    log(f"facility {fid} (tag {tag})")
    try:
        clock = operator.get("/v1/test-clock")
        movable = bool(clock["movable"]) and not args.real_clock
        now = datetime.fromisoformat(clock["now"])
    except ApiError:
        movable, now = False, datetime.now(UTC)
    world = World(target=api.base, facility_id=fid, clock="test" if movable else "real",
                  booking_length_minutes=BOOKING_LENGTH)
    residents = [p.resident(fid, visit_unit, i, "V") for i in range(args.pairs)]
    kiosks = [p.kiosk(fid, visit_unit, i) for i in range(args.pairs)]
    world.booking_residents = [p.resident(fid, booking_unit, i, "B") for i in range(max(1, min(args.bookers, 20)))]
    accounts = [p.visitor(fid, i, given[i] if i < len(given) else None) for i in range(args.pairs + args.bookers)]
    world.bookers = accounts[args.pairs:]
    world.officers = [p.staff(fid, "officer", i) for i in range(args.officers)]
    world.investigators = [p.staff(fid, "investigator", i) for i in range(args.investigators)]
    recorded = getattr(args, "recorded_visits", 0)
    if recorded and not movable:
        log("--recorded-visits needs a movable clock (demo or test mode): none made")
    elif recorded:
        world.recordings = recorded_visits(p, operator, world, visit_unit, accounts, recorded,
                                           min(BOOKING_LENGTH, args.visit_minutes))
        now = datetime.fromisoformat(operator.get("/v1/test-clock")["now"])
    lead = 60 if movable else args.start_in
    start = (now + timedelta(seconds=lead)).replace(microsecond=0)
    for i in range(args.pairs):
        got = p.book(accounts[i], residents[i], start, args.visit_minutes)
        world.visits.append(LiveVisit(got["id"], got["starts_at"], got["ends_at"], accounts[i], kiosks[i]))
    if movable and args.pairs:
        advance_to(operator, start)
    log(f"{args.pairs} visits live from {start.isoformat()} for {args.visit_minutes} min "
        f"({'test clock moved' if movable else 'real clock'}); {len(world.bookers)} bookers, "
        f"{len(world.officers)} officers, {len(world.investigators)} investigators")
    return world


def advance_to(operator: Api, moment: datetime) -> None:
    """Move the test clock to just past `moment`."""
    clock_now = datetime.fromisoformat(operator.get("/v1/test-clock")["now"])
    operator.post("/v1/test-clock/advance", {"seconds": max(1, math.ceil((moment - clock_now).total_seconds()) + 1)})


def recorded_visits(p: Provisioner, operator: Api, world: World, unit: str, accounts: list[Account],
                    count: int, minutes: int) -> list[str]:
    """`count` finished, recorded social visits one after another (R1), each listed by the
    recording search (R3) before the next; their own residents, so the live visits stay free (B3)."""
    fid = world.facility_id
    officer_account = world.officers[0] if world.officers else p.staff(fid, "officer", "recorder")
    reviewer_account = world.investigators[0] if world.investigators else None
    officer = login(p.api, officer_account.email, officer_account.password, officer_account.totp_secret)
    reviewer = (login(p.api, reviewer_account.email, reviewer_account.password, reviewer_account.totp_secret)
                if reviewer_account is not None else operator)
    visitor_account = accounts[0] if accounts else p.visitor(fid, 0, None)
    visitor = login(p.api, visitor_account.email, visitor_account.password)
    kiosk = p.kiosk(fid, unit, "R")
    done: list[str] = []
    for n in range(count):
        resident = p.resident(fid, unit, n, "R")
        now = datetime.fromisoformat(operator.get("/v1/test-clock")["now"])
        start = (now + timedelta(seconds=60)).replace(microsecond=0)
        visit = p.book(visitor_account, resident, start, minutes)
        advance_to(operator, start)
        made = RecordedVisit(
            visit_id=visit["id"], facility_id=fid, officer=officer, reviewer=reviewer,
            visitor=visitor,
            kiosk=p.api.as_(p.api.as_("").post("/v1/auth/kiosk", {"kiosk_id": kiosk.id,
                                                                   "secret": kiosk.secret})["access_token"]))
        asyncio.run(record(made))
        found = wait_for_recording(made, start - timedelta(minutes=1))
        log(f"recorded visit {visit['id']}: listed, {found['segments']} segment(s)")
        done.append(visit["id"])
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.provision",
        description="Build a load-test facility over the public API and write its world JSON.")
    parser.add_argument("--target", required=True, help="the deployment's base URL, e.g. https://staging.example.org")
    parser.add_argument("--operator-email", required=True)
    parser.add_argument("--operator-password", required=True)
    parser.add_argument("--operator-totp-secret", default=None,
                        help="base32 authenticator secret, when the target requires two-step sign-in for the operator")
    parser.add_argument("--pairs", type=int, default=4, help="visits live at once (one visit pair user each)")
    parser.add_argument("--bookers", type=int, default=4, help="approved visitors that search, book and cancel")
    parser.add_argument("--officers", type=int, default=1)
    parser.add_argument("--investigators", type=int, default=1)
    parser.add_argument("--visit-minutes", type=int, default=60, choices=range(5, 241), metavar="5..240",
                        help="length of the live visits (the longest load run they can serve)")
    parser.add_argument("--start-in", type=int, default=30, help="real clock only: seconds until the visits start")
    parser.add_argument("--real-clock", action="store_true", help="never move the target's test clock")
    parser.add_argument("--recorded-visits", type=int, default=0, metavar="N",
                        help="movable clock only: N short visits held with media and ended first, so investigators "
                             "have recordings to play")
    parser.add_argument("--ice-addresses", default="",
                        help="comma-separated addresses the recorded visits' peers gather ICE candidates on "
                             "(127.0.0.1 for a local target)")
    parser.add_argument("--visitors-file", type=Path, default=None,
                        help="email,password lines of confirmed visitor accounts (targets without the demo outbox)")
    parser.add_argument("--tag", default=None, help="names the run's accounts and facility (default: random)")
    parser.add_argument("--insecure", action="store_true", help="accept a self-signed TLS certificate")
    parser.add_argument("--out", type=Path, default=Path("world.json"))
    args = parser.parse_args(argv)
    if args.ice_addresses:
        from sfu.aiortc_adapter import restrict_host_candidates

        restrict_host_candidates([a.strip() for a in args.ice_addresses.split(",") if a.strip()])
    try:
        world = provision(args)
    except (ApiError, RecordingFailed) as exc:
        log(f"provisioning failed: {exc}")
        return 1
    world.save(args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
