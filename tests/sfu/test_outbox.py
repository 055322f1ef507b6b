"""The outbox (sfu/outbox.py): an event is on disk before `report` returns, delivered in order,
retried with capped jittered backoff until acknowledged, dead-lettered when refused for good,
replayed after a reopen, and `close(timeout)` keeps its deadline (issue 11: no outcome is lost;
S6, M8 follow what the node reported).

The control plane is played by a real aiohttp server where HTTP matters, and by a scripted
`Delivery` where only the outbox's own behaviour is under test."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from control_api.app import start_site
from sfu.events import DeliveryFailed, DeliveryRefused, HttpDelivery, VisitEvent
from sfu.outbox import Backoff, Outbox, OutboxCollector, OutboxInUseError

FAST = Backoff(base=0.02, cap=0.1)


def event(n: int, kind: str = "participant_joined") -> VisitEvent:
    return VisitEvent(f"visit-{n % 3}", kind, datetime.now(UTC), participant="visitor",  # type: ignore[arg-type]
                      event_id=f"ev-{n:04d}")


@dataclass
class ScriptedDelivery:
    """Takes events unless told otherwise: `down` fails every attempt, `refuse` names event ids
    refused for good, `fail_first` fails that many attempts first."""

    down: bool = False
    refuse: set[str] = field(default_factory=set)
    fail_first: int = 0
    taken: list[str] = field(default_factory=list)
    attempts: list[tuple[float, str]] = field(default_factory=list)

    async def deliver(self, e: VisitEvent) -> None:
        self.attempts.append((time.monotonic(), e.event_id))
        if self.down:
            raise DeliveryFailed("control plane down")
        if self.fail_first > 0:
            self.fail_first -= 1
            raise DeliveryFailed("not yet")
        if e.event_id in self.refuse:
            raise DeliveryRefused("HTTP 422: invalid")
        self.taken.append(e.event_id)

    async def close(self) -> None:
        return None


async def test_events_are_delivered_in_the_order_they_were_reported(tmp_path: Path) -> None:
    delivery = ScriptedDelivery()
    outbox = await Outbox.open(tmp_path / "o.sqlite3", delivery, backoff=FAST)
    await asyncio.gather(*(outbox.report(event(n)) for n in range(50)))
    assert await outbox.drained(5)
    assert delivery.taken == [f"ev-{n:04d}" for n in range(50)]
    await outbox.close(1)


async def test_pending_events_are_replayed_in_order_after_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    down = ScriptedDelivery(down=True)
    outbox = await Outbox.open(path, down, backoff=FAST)
    for n in range(20):
        await outbox.report(event(n))
    await outbox.close(0.2)  # the control plane never answered: all 20 stay on disk
    assert outbox.pending == 20 and len(down.taken) == 0

    up = ScriptedDelivery()
    again = await Outbox.open(path, up, backoff=FAST)
    assert again.replayed == 20
    await again.report(event(20))
    assert await again.drained(5)
    assert up.taken == [f"ev-{n:04d}" for n in range(21)]  # the old ones first, then the new one
    await again.close(1)
    third = await Outbox.open(path, ScriptedDelivery(), backoff=FAST)
    assert third.replayed == 0  # acknowledged events are gone from the disk
    await third.close(1)


async def test_failed_attempts_back_off_exponentially_and_then_deliver(tmp_path: Path) -> None:
    delivery = ScriptedDelivery(fail_first=5)
    outbox = await Outbox.open(tmp_path / "o.sqlite3", delivery, backoff=Backoff(base=0.05, cap=0.4))
    await outbox.report(event(1))
    assert await outbox.drained(5)
    times = [t for t, _ in delivery.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 6 and delivery.taken == ["ev-0001"]
    assert outbox.retries == 5
    # equal jitter: each gap is between half and all of its step (0.05, 0.1, 0.2, 0.4, 0.4 capped)
    for gap, step in zip(gaps, (0.05, 0.1, 0.2, 0.4, 0.4), strict=True):
        assert step / 2 - 0.01 <= gap <= step + 0.05, (gaps, step)
    await outbox.close(1)


def test_backoff_is_capped_jittered_and_honours_retry_after() -> None:
    low, high = Backoff(base=1, cap=8, rng=lambda: 0.0), Backoff(base=1, cap=8, rng=lambda: 1.0)
    assert [low.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert [high.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]
    assert low.delay(1, retry_after=5) == 5  # Retry-After is a floor...
    assert low.delay(1, retry_after=60) == 8  # ...up to the cap


async def test_an_event_refused_for_good_goes_to_dead_letters_and_the_rest_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    delivery = ScriptedDelivery(refuse={"ev-0002"})
    outbox = await Outbox.open(path, delivery, backoff=FAST)
    for n in range(5):
        await outbox.report(event(n))
    assert await outbox.drained(5)
    assert delivery.taken == ["ev-0000", "ev-0001", "ev-0003", "ev-0004"]
    [dead] = await outbox.read_dead_letters()
    assert dead.event.event_id == "ev-0002" and "422" in dead.reason and dead.attempts == 1
    assert outbox.dead_letters == 1 and outbox.retries == 0  # refused once, never retried
    await outbox.close(1)
    again = await Outbox.open(path, ScriptedDelivery(), backoff=FAST)
    assert again.replayed == 0 and again.dead_letters == 1  # kept for an operator, not replayed
    await again.close(1)


async def test_close_keeps_its_deadline_and_leaves_the_rest_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    outbox = await Outbox.open(path, ScriptedDelivery(down=True), backoff=Backoff(base=5, cap=30))
    for n in range(3):
        await outbox.report(event(n))
    await asyncio.sleep(0.05)  # the first attempt failed: the sender now waits out a 2.5-5 s backoff
    started = time.monotonic()
    await outbox.close(0.5)
    assert time.monotonic() - started < 0.8
    with pytest.raises(RuntimeError):
        await outbox.report(event(9))  # closed: nothing is silently dropped
    reopened = await Outbox.open(path, ScriptedDelivery(), backoff=FAST)
    assert reopened.replayed == 3
    await reopened.close(1)


async def test_close_cuts_a_backoff_short_to_deliver_what_is_pending(tmp_path: Path) -> None:
    delivery = ScriptedDelivery(fail_first=1)
    outbox = await Outbox.open(tmp_path / "o.sqlite3", delivery, backoff=Backoff(base=5, cap=30))
    await outbox.report(event(1))
    await asyncio.sleep(0.05)  # first attempt failed; next one would be seconds away
    started = time.monotonic()
    await outbox.close(2)
    assert delivery.taken == ["ev-0001"] and time.monotonic() - started < 0.5
    assert outbox.pending == 0


async def test_one_outbox_file_is_sent_by_one_process_only(tmp_path: Path) -> None:
    outbox = await Outbox.open(tmp_path / "o.sqlite3", ScriptedDelivery())
    with pytest.raises(OutboxInUseError):
        await Outbox.open(tmp_path / "o.sqlite3", ScriptedDelivery())
    await outbox.close(1)
    (await Outbox.open(tmp_path / "o.sqlite3", ScriptedDelivery()))  # released on close
    # (left open: the lock is a flock, released when the file descriptor goes)


async def test_metrics_show_depth_age_retries_and_dead_letters(tmp_path: Path) -> None:
    delivery = ScriptedDelivery(down=True, refuse={"ev-0000"})
    outbox = await Outbox.open(tmp_path / "o.sqlite3", delivery, name="node", backoff=FAST)
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox))
    for n in range(3):
        await outbox.report(event(n))
    await asyncio.sleep(0.3)
    text = generate_latest(registry).decode()
    assert 'openvisit_outbox_pending{outbox="node"} 3.0' in text
    assert outbox.oldest_pending_age() >= 0.25
    assert outbox.retries >= 2 and 'openvisit_outbox_retries_total{outbox="node"}' in text
    delivery.down = False
    assert await outbox.drained(5)
    text = generate_latest(registry).decode()
    assert 'openvisit_outbox_pending{outbox="node"} 0.0' in text
    assert 'openvisit_outbox_dead_letters_total{outbox="node"} 1.0' in text
    assert 'openvisit_outbox_delivered_total{outbox="node"} 2.0' in text
    await outbox.close(1)


# ---------------------------------------------------------------------- over HTTP


@dataclass
class FakeControlPlane:
    """A real HTTP server answering /v1/internal/media-events as scripted by status code."""

    answers: list[int] = field(default_factory=list)  # consumed in order; then 200
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (event id, authorization)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.seen.append((body["event_id"], request.headers.get("Authorization")))
        status = self.answers.pop(0) if self.answers else 200
        headers = {"Retry-After": "0"} if status == 503 else {}
        return web.json_response({"status": status}, status=status, headers=headers)


@pytest.fixture
async def control_plane() -> AsyncIterator[tuple[FakeControlPlane, str]]:
    fake = FakeControlPlane()
    app = web.Application()
    app.router.add_post("/v1/internal/media-events", fake.handle)
    runner, port = await start_site(app, "127.0.0.1", 0)
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_http_delivery_retries_5xx_and_dead_letters_validation_errors(
        tmp_path: Path, control_plane: tuple[FakeControlPlane, str]) -> None:
    fake, url = control_plane
    fake.answers = [503, 500, 200, 422, 401, 200]
    outbox = await Outbox.open(tmp_path / "o.sqlite3", HttpDelivery(url, "s3cret"), backoff=FAST)
    for n in range(3):
        await outbox.report(event(n))
    assert await outbox.drained(5)
    assert [e for e, _ in fake.seen] == ["ev-0000"] * 3 + ["ev-0001"] + ["ev-0002"] * 2
    assert all(auth == "Bearer s3cret" for _, auth in fake.seen)
    [dead] = await outbox.read_dead_letters()
    assert dead.event.event_id == "ev-0001" and dead.reason.startswith("HTTP 422")
    assert outbox.retries == 3  # 503, 500 and 401 (a wrong secret is fixed by an operator, not dropped)
    await outbox.close(1)


async def test_http_delivery_waits_for_a_control_plane_that_is_not_there_yet(tmp_path: Path) -> None:
    app = web.Application()
    fake = FakeControlPlane()
    app.router.add_post("/v1/internal/media-events", fake.handle)
    runner, port = await start_site(app, "127.0.0.1", 0)
    await runner.cleanup()  # nothing listens on `port` now: connection refused
    outbox = await Outbox.open(tmp_path / "o.sqlite3", HttpDelivery(f"http://127.0.0.1:{port}", "s"), backoff=FAST)
    for n in range(4):
        await outbox.report(event(n))
    await asyncio.sleep(0.4)
    assert outbox.pending == 4 and outbox.retries >= 2
    runner, _ = await start_site(app, "127.0.0.1", port)  # the control plane comes (back) up
    try:
        assert await outbox.drained(5)
        assert [e for e, _ in fake.seen] == [f"ev-{n:04d}" for n in range(4)]
    finally:
        await outbox.close(1)
        await runner.cleanup()
