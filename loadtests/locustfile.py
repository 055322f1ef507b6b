"""Locust users for the traffic of a visiting day, all through the public API, signaling and media
of the target in the world file that `python -m loadtests.provision` wrote:

    locust -f loadtests/locustfile.py --world world.json --host URL [--headless -u 6 -r 6 -t 5m --csv out]

- `VisitPair`: a booked visit's visitor and kiosk as aiortc peers (loadtests/party.py) on this
  process's asyncio thread (loadtests/bridge.py); per visit and party it reports Locust requests
  of type `media` (join http ms, ice connected ms, first frame ms, fps, loss 0.01%, jitter ms,
  freezes, freeze ms, bitrate kbps; the "response time" column holds the value) and one of type
  `visit` named `outcome` (failed when a party was refused, never connected, got no video or was
  dropped).
- `Booker`: availability, quote, book and cancel with Idempotency-Keys, with think times.
- `Officer`: the live-visit list, and now and then a hidden monitor for a few seconds.
- `Investigator`: recording search, a recording opened and played with range requests.

Thresholds (loadtests/thresholds.py) set the exit code. `loadtests/day.py` adds the visiting day
load shape. Custom samples are ordinary Locust requests, so a distributed run (`--processes N` or
master/workers) aggregates them on the master; set `--visit-slices` to the number of worker
processes on remote workers so each takes its own share of the live visits."""

from __future__ import annotations

import logging
import random
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
from locust import FastHttpUser, User, between, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtests import thresholds as th
from loadtests.bridge import bridge, close_bridge
from loadtests.metrics import PartyMetrics
from loadtests.world import Account, LiveVisit, World

log = logging.getLogger("openvisit.loadtest")
TOKEN_REUSE_S = 600  # access tokens last 15 minutes: sign in again after 10


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    parser.add_argument("--world", default="world.json", help="the JSON written by python -m loadtests.provision")
    parser.add_argument("--hold-seconds", type=float, default=60.0,
                        help="how long each visit pair holds its visit after the first frame before leaving and "
                             "taking the next one (keep it below the run time, or the last visit goes unreported)")
    parser.add_argument("--ice-addresses", default="",
                        help="comma-separated addresses the load peers gather ICE candidates on (127.0.0.1 "
                             "for a local target; default: every non-loopback interface)")
    parser.add_argument("--visit-slices", type=int, default=0,
                        help="worker processes sharing the live visits (default: --processes, else 1)")
    parser.add_argument("--monitor-seconds", type=float, default=8.0, help="how long an officer watches a visit")
    th.add_arguments(parser)


class Shared:
    """Per process: the world, this process's share of the live visits, the pre-encoded media."""

    world: World | None = None
    free: list[LiveVisit] = []
    lock = gevent.lock.Semaphore()
    media: Any = None
    tokens: dict[str, tuple[str, float]] = {}
    process = "1 of 1"  # this process's share of the visits, for the log

    @classmethod
    def setup(cls, environment: Environment) -> None:
        options = environment.parsed_options
        if options is None or cls.world is not None:
            return
        cls.world = World.load(Path(options.world))
        slices = options.visit_slices or max(1, getattr(options, "processes", 0) or 0) or 1
        index = getattr(environment.runner, "worker_index", 0) or 0
        cls.free = [v for i, v in enumerate(cls.world.visits) if i % slices == index % slices]
        cls.process = f"{index % slices + 1} of {slices}"
        log.info("process %s holds visits %s", cls.process, [v.id for v in cls.free])
        if environment.host is None:
            environment.host = cls.world.target

    @classmethod
    def claim(cls) -> LiveVisit:
        """A live visit no other pair of this process holds (waits for one)."""
        while True:
            with cls.lock:
                if cls.free:
                    return cls.free.pop(0)
            gevent.sleep(0.5)

    @classmethod
    def release(cls, visit: LiveVisit) -> None:
        with cls.lock:
            cls.free.append(visit)

    @classmethod
    def pre_encoded(cls) -> Any:
        if cls.media is None:
            from loadtests.party import Media
            from loadtests.synthetic_media import encode_opus, encode_vp8

            cls.media = Media(vp8=encode_vp8(frames=90), opus=encode_opus(packets=150))
        return cls.media


@events.init.add_listener
def _init(environment: Environment, **_kw: Any) -> None:
    options = environment.parsed_options
    if options is None:
        return
    for noisy in ("aioice", "aiortc"):  # a line per ICE check would bury Locust's own output
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if options.ice_addresses:
        from sfu.aiortc_adapter import restrict_host_candidates

        restrict_host_candidates([a.strip() for a in options.ice_addresses.split(",") if a.strip()])
    if not isinstance(environment.runner, WorkerRunner):  # class counts follow the world on the master
        world = World.load(Path(options.world))
        VisitPair.fixed_count = len(world.visits)
        Booker.fixed_count = len(world.bookers)
        Officer.fixed_count = len(world.officers)
        Investigator.fixed_count = len(world.investigators)
        if environment.host is None:
            environment.host = world.target


@events.test_start.add_listener
def _test_start(environment: Environment, **_kw: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        Shared.setup(environment)


@events.quitting.add_listener
def _quitting(environment: Environment, **_kw: Any) -> None:
    close_bridge()
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options is None:
        return
    missed = th.violations(th.Limits.from_options(environment.parsed_options), environment.stats.entries,
                           environment.stats.total)
    for line in missed:
        log.error("threshold missed: %s", line)
    if missed:
        environment.process_exit_code = 1
    elif any(v is not None for v in vars(th.Limits.from_options(environment.parsed_options)).values()):
        log.info("every threshold met")


def fire(environment: Environment, kind: str, name: str, value: float, *, exception: Exception | None = None,
         length: int = 0) -> None:
    environment.events.request.fire(request_type=kind, name=name, response_time=value, response_length=length,
                                    exception=exception, context={})


def report_party(environment: Environment, m: PartyMetrics) -> None:
    """One party's numbers as `media` samples (only what was measured: a party that never got video
    has no first frame sample; its failure shows in the visit's outcome)."""
    if m.join_http_s is not None:
        fire(environment, th.MEDIA, th.JOIN, m.join_http_s * 1000)
    if m.ice_s is not None:
        fire(environment, th.MEDIA, th.ICE, m.ice_s * 1000)
    if m.first_frame_s is not None:
        fire(environment, th.MEDIA, th.FIRST_FRAME, m.first_frame_s * 1000)
        frozen = m.freezes
        fire(environment, th.MEDIA, th.FPS, m.fps)
        fire(environment, th.MEDIA, th.LOSS, m.loss * 10000)
        fire(environment, th.MEDIA, th.JITTER, m.jitter_ms)
        fire(environment, th.MEDIA, th.FREEZES, frozen.count)
        fire(environment, th.MEDIA, th.FREEZE_MS, frozen.total_seconds * 1000)
        fire(environment, th.MEDIA, th.BITRATE, m.bitrate_kbps, length=m.bytes_received)


class VisitPair(User):
    """Holds live visits one after another: both parties join, publish and receive for
    `--hold-seconds`, leave, and the pair takes the next free visit of its process (S5 lets a
    party rejoin the same visit until its end)."""

    weight = 4
    wait_time = between(1, 3)

    def on_start(self) -> None:
        Shared.setup(self.environment)

    async def _tokens(self, http: Any, visit: LiveVisit) -> tuple[str, str]:
        async def token(key: str, path: str, body: dict[str, Any]) -> str:
            cached = Shared.tokens.get(key)
            if cached is not None and time.monotonic() - cached[1] < TOKEN_REUSE_S:
                return cached[0]
            async with http.post(f"{self.host}{path}", json=body) as resp:
                got = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RuntimeError(f"sign-in HTTP {resp.status}: {got}")
            Shared.tokens[key] = (got["access_token"], time.monotonic())
            return str(got["access_token"])

        visitor = await token(visit.visitor.email, "/v1/auth/login",
                              {"email": visit.visitor.email, "password": visit.visitor.password})
        kiosk = await token(visit.kiosk.id, "/v1/auth/kiosk",
                            {"kiosk_id": visit.kiosk.id, "secret": visit.kiosk.secret})
        return visitor, kiosk

    async def _visit(self, visit: LiveVisit, hold_seconds: float) -> list[PartyMetrics]:
        import aiohttp

        from loadtests.party import Party, hold_visit

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            try:
                visitor, kiosk = await self._tokens(http, visit)
            except (RuntimeError, aiohttp.ClientError, OSError) as exc:
                return [PartyMetrics(side=s, outcome="refused", error=str(exc)) for s in ("visitor", "resident")]
            return await hold_visit(http, self.host or "", visit.id, Party("visitor", visitor),
                                    Party("resident", kiosk), Shared.pre_encoded(), hold_seconds)

    @task
    def visit(self) -> None:
        options = self.environment.parsed_options
        hold_seconds = float(options.hold_seconds) if options is not None else 60.0
        visit = Shared.claim()
        started = time.monotonic()
        try:
            parties = bridge().run(self._visit(visit, hold_seconds), timeout=hold_seconds + 90)
        finally:
            Shared.release(visit)
        for party in parties:
            report_party(self.environment, party)
        errors = [f"{p.side}: {p.error}" for p in parties if p.error]
        log.info("process %s: visit %s %s", Shared.process, visit.id, "; ".join(errors) or "held")
        fire(self.environment, th.VISIT, th.OUTCOME, (time.monotonic() - started) * 1000,
             exception=RuntimeError("; ".join(errors)) if errors else None)


class SignedIn(FastHttpUser):
    """A user of the API with an access token, signed in again when it expires (401)."""

    abstract = True
    account: Account
    token = ""

    def sign_in(self) -> None:
        body: dict[str, Any] = {"email": self.account.email, "password": self.account.password}
        if self.account.totp_secret:
            from loadtests.api import totp_code

            body["second_factor_code"] = totp_code(self.account.totp_secret)
        with self.client.post("/v1/auth/login", json=body, name="/v1/auth/login", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"sign-in HTTP {resp.status_code}")
                return
            self.token = resp.json()["access_token"]

    def call(self, method: str, path: str, name: str, *, ok: tuple[int, ...] = (200, 201), **kw: Any) -> Any:
        """One API request; an expired token is renewed once; `ok` statuses are successes."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
            with self.client.request(method, path, name=name, headers=headers, catch_response=True, **kw) as resp:
                if resp.status_code == 401 and attempt == 1:
                    resp.success()  # not a failure: the token expired; renewed right away
                    self.sign_in()
                    kw["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
                    continue
                if resp.status_code in ok:
                    resp.success()
                    return resp
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return None
        return None


def _pick(accounts: list[Account], counter: list[int]) -> Account:
    account = accounts[counter[0] % len(accounts)]
    counter[0] += 1
    return account


class Booker(SignedIn):
    """A visitor booking ahead: searches a week of slots, asks a quote, books and pays (B6, M1),
    previews the cancellation and cancels (M3a), each step after a think time. Losing the last
    slot to another booker (409, B8) is a correct answer, not an error."""

    weight = 2
    wait_time = between(2, 6)
    _counter = [0]

    def on_start(self) -> None:
        Shared.setup(self.environment)
        assert Shared.world is not None
        self.world = Shared.world
        self.account = _pick(self.world.bookers, self._counter)
        self.sign_in()

    @task
    def book_and_cancel(self) -> None:
        world = self.world
        resident = random.choice(world.booking_residents)
        first = date.today() + timedelta(days=random.randint(2, 20))
        length = world.booking_length_minutes
        got = self.call("GET", f"/v1/residents/{resident}/availability?from={first.isoformat()}"
                        f"&to={(first + timedelta(days=6)).isoformat()}&length_minutes={length}",
                        "/v1/residents/[id]/availability")
        slots = got.json().get("slots", []) if got is not None else []
        if not slots:
            return
        slot = random.choice(slots)
        gevent.sleep(random.uniform(0.5, 2))
        body = {"resident_id": resident, "starts_at": slot["starts_at"], "length_minutes": length,
                "visit_type": "social"}
        self.call("POST", "/v1/quotes", "/v1/quotes", json=body)
        gevent.sleep(random.uniform(0.5, 2))
        booked = self.call("POST", "/v1/visits", "/v1/visits (book)", ok=(201, 409),
                           json={**body, "payment": {"card_token": "tok_visa", "use_credit": random.random() < 0.5}},
                           headers={"Idempotency-Key": secrets.token_hex(16)})
        if booked is None or booked.status_code != 201:
            return
        visit_id = booked.json()["id"]
        self.call("GET", "/v1/me/balance", "/v1/me/balance")
        gevent.sleep(random.uniform(0.5, 2))
        self.call("GET", f"/v1/visits/{visit_id}/cancellation", "/v1/visits/[id]/cancellation")
        self.call("POST", f"/v1/visits/{visit_id}/cancel", "/v1/visits/[id]/cancel", json={"reason": "load test"},
                  headers={"Idempotency-Key": secrets.token_hex(16)})


class Officer(SignedIn):
    """The officer console: the live-visit list every few seconds, and now and then a visit watched
    through a hidden monitor (media samples `monitor first frame ms`)."""

    weight = 1
    wait_time = between(3, 8)
    _counter = [0]

    def on_start(self) -> None:
        Shared.setup(self.environment)
        assert Shared.world is not None
        self.world = Shared.world
        self.account = _pick(self.world.officers, self._counter)
        self.sign_in()

    @task(4)
    def live_visits(self) -> None:
        self.call("GET", f"/v1/facilities/{self.world.facility_id}/live-visits", "/v1/facilities/[id]/live-visits")

    @task(1)
    def monitor(self) -> None:
        got = self.call("GET", f"/v1/facilities/{self.world.facility_id}/live-visits",
                        "/v1/facilities/[id]/live-visits")
        live = [v for v in (got.json() if got is not None else []) if v["on_media_server"] and not v["locked"]]
        if not live:
            return
        from loadtests.party import watch

        options = self.environment.parsed_options
        seconds = float(options.monitor_seconds) if options is not None else 8.0
        m = bridge().run(watch_with(self.host or "", random.choice(live)["id"], self.token, seconds, watch),
                         timeout=seconds + 60)
        if m.join_http_s is not None:
            fire(self.environment, "POST", "/v1/visits/[id]/monitor", m.join_http_s * 1000,
                 exception=RuntimeError(m.error) if m.outcome == "refused" else None)
        if m.first_frame_s is not None:
            fire(self.environment, th.MEDIA, th.MONITOR_FIRST_FRAME, m.first_frame_s * 1000)
        elif m.outcome != "refused":
            fire(self.environment, th.VISIT, "monitor", 0, exception=RuntimeError(m.error or "no video"))


async def watch_with(api: str, visit_id: str, token: str, seconds: float, watch: Any) -> PartyMetrics:
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        result: PartyMetrics = await watch(http, api, visit_id, token, seconds)
        return result


class Investigator(SignedIn):
    """Recording review: searches the facility's recordings of the last week, opens one (audited,
    R3) and plays one of its files with HTTP range requests, as a browser's player seeks: each must
    answer 206 Partial Content (a 200 would mean the player cannot seek). Provisioning with
    `--recorded-visits` makes sure there is something to play in a short run."""

    weight = 1
    wait_time = between(5, 15)
    _counter = [0]

    def on_start(self) -> None:
        Shared.setup(self.environment)
        assert Shared.world is not None
        self.world = Shared.world
        self.account = _pick(self.world.investigators, self._counter)
        self.sign_in()

    @task
    def review(self) -> None:
        since = (datetime.now(UTC) - timedelta(days=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
        got = self.call("GET", f"/v1/facilities/{self.world.facility_id}/recordings?from={since}",
                        "/v1/facilities/[id]/recordings")
        found = got.json() if got is not None else []
        if not found:
            return
        gevent.sleep(random.uniform(1, 3))
        opened = self.call("GET", f"/v1/recordings/{random.choice(found)['visit_id']}", "/v1/recordings/[id]")
        files = opened.json().get("files", []) if opened is not None else []
        if not files:
            return
        playable = [f for f in files if int(f.get("size_bytes") or 0) > 0 and not f.get("damaged")]
        if not playable:
            return
        file = random.choice(playable)
        size = int(file["size_bytes"])
        for start in sorted({0, size // 2, max(0, size - 65536)}):  # open, seek to the middle, the end's cues
            self.call("GET", file["url"], "/v1/recordings/[id]/files/[name] (range)", ok=(206,),
                      headers={"Range": f"bytes={start}-{min(size, start + 65536) - 1}"})
            gevent.sleep(random.uniform(0.5, 2))
