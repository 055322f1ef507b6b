"""The outbox: visit events leave a media node through a file on its disk, so no outcome is lost.

A room reports an event (`VisitEventSink.report`); the outbox writes it to SQLite (WAL,
`synchronous=FULL`, committed) before `report` returns. A background sender then hands the events
to a `Delivery`, one at a time and in the order they were reported, until each is acknowledged:

- acknowledged: the delivery returned (over HTTP: the control plane answered 2xx, which it does
  only after its database transaction committed). The row is deleted.
- refused for good (`DeliveryRefused`: a validation error, an unknown visit): moved to the
  `dead_letters` table with the reason and a log line; never retried by itself.
- anything else (connection refused, timeout, 5xx, 503 while the database restarts, ...): retried
  with exponential backoff (capped, jittered; a `Retry-After` is honoured up to the cap).

The control plane applies each event once by its `event_id`, so a repeated delivery (the node died
between the acknowledgement and the delete) changes nothing (S6, M8: outcomes and charges follow
what the node reported, exactly once). Pending events are replayed when the outbox is opened again
after a crash or restart. `close(timeout)` tries to deliver what is pending for up to `timeout`
seconds and leaves the rest on disk for the next start.

All disk work runs on one dedicated thread (the event loop never waits on an fsync), in the order
it was asked for. A lock file keeps two processes from sending the same outbox.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from sfu.events import Delivery, DeliveryFailed, DeliveryRefused, VisitEvent

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    stored_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    body TEXT NOT NULL,
    stored_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL
);
"""


class OutboxInUseError(Exception):
    pass


@dataclass
class _Pending:
    seq: int
    event: VisitEvent
    stored_at: float  # wall clock (survives a restart)
    attempts: int = 0


@dataclass(frozen=True)
class DeadLetter:
    event: VisitEvent
    reason: str
    attempts: int


@dataclass
class Backoff:
    """Exponential, capped, jittered ("equal jitter": between half and all of the step)."""

    base: float = 0.25
    cap: float = 10.0
    rng: Callable[[], float] = field(default=random.random)

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        step = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        delay = step / 2 + step / 2 * self.rng()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return delay


class Outbox:
    """A durable, ordered, at-least-once sender of visit events (a `VisitEventSink`)."""

    def __init__(self, path: Path | str, delivery: Delivery, *, name: str = "media",
                 backoff: Backoff | None = None, attempt_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.delivery = delivery
        self.name = name
        self.backoff = backoff or Backoff()
        self.attempt_timeout = attempt_timeout
        self.delivered = 0
        self.retries = 0
        self.dead_letters = 0  # stored in the table (previous runs included)
        self.replayed = 0  # pending events found on disk when opened
        self._queue: list[_Pending] = []  # mirrors `pending`, sorted by seq
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox-{name}")
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._wake = asyncio.Event()  # something to send
        self._hurry = asyncio.Event()  # stop waiting out a backoff (closing)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._failing_since: float | None = None

    # ------------------------------------------------------------------ life cycle

    @classmethod
    async def open(cls, path: Path | str, delivery: Delivery, **kwargs: Any) -> Outbox:
        """Open (or create) the outbox at `path`, load what is pending and start sending it."""
        outbox = cls(path, delivery, **kwargs)
        await outbox._start()
        return outbox

    async def _start(self) -> None:
        rows, dead = await self._disk(self._open_db)
        self._queue = [_Pending(seq, VisitEvent.from_json(json.loads(body)), stored_at)
                       for seq, body, stored_at in rows]
        self.replayed = len(self._queue)
        self.dead_letters = dead
        if self._queue:
            log.info("outbox %s: %d event(s) pending from before this start; delivering them first",
                     self.name, len(self._queue))
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._send_forever(), name=f"outbox-{self.name}")

    def _open_db(self) -> tuple[list[tuple[int, str, float]], int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxInUseError(f"outbox {self.path} is in use by another process; give each process its "
                                   "own (setting media_outbox_path)") from None
        self._lock_fd = fd
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a committed event survives power loss, not just a crash
        db.executescript(SCHEMA)
        self._db = db
        rows = db.execute("SELECT seq, body, stored_at FROM pending ORDER BY seq").fetchall()
        dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
        return rows, int(dead)

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 (a flush deadline, not a cancel)
        """Deliver what is pending for up to `timeout` seconds (a pending backoff is cut short);
        whatever is left stays on disk and goes first at the next start."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._hurry.set()
        if self._task is not None:
            _done, pending = await asyncio.wait({self._task}, timeout=max(0.0, timeout))
            if pending:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        self._closed = True
        with contextlib.suppress(Exception):
            await self.delivery.close()
        if self._queue:
            log.warning("outbox %s closed with %d event(s) not yet delivered; they stay in %s and are sent at the "
                        "next start", self.name, len(self._queue), self.path)
        await self._disk(self._close_db)
        self._thread.shutdown(wait=True)

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ the sink

    async def report(self, event: VisitEvent) -> None:
        """Store `event` durably; it is delivered later, in order. Returns once it is on disk."""
        if self._closed:
            raise RuntimeError(f"outbox {self.name} is closed; event {event.event_id} ({event.kind}) not stored")
        body = json.dumps(event.to_json(), separators=(",", ":"), default=str)
        stored_at = time.time()
        # The thread runs jobs in submission order, so seq follows the order of report() calls.
        seq = await self._disk(self._insert, event.event_id, body, stored_at)
        item = _Pending(seq, event, stored_at)
        if not self._queue or self._queue[-1].seq < seq:
            self._queue.append(item)
        else:
            bisect.insort(self._queue, item, key=lambda p: p.seq)
        self._wake.set()

    def _insert(self, event_id: str, body: str, stored_at: float) -> int:
        assert self._db is not None
        cur = self._db.execute("INSERT INTO pending (event_id, body, stored_at) VALUES (?, ?, ?)",
                               (event_id, body, stored_at))
        assert cur.lastrowid is not None
        return cur.lastrowid

    # ------------------------------------------------------------------ the sender

    async def _send_forever(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue[0]
            try:
                async with asyncio.timeout(self.attempt_timeout):
                    await self.delivery.deliver(item.event)
            except DeliveryRefused as exc:
                item.attempts += 1
                await self._disk(self._to_dead_letters, item, str(exc)[:1000])
                self._forget(item)
                self.dead_letters += 1
                log.error("outbox %s: event %s (%s, visit %s) refused for good, moved to dead letters: %s",
                          self.name, item.event.event_id, item.event.kind, item.event.visit_id, exc)
                continue
            except Exception as exc:  # not taken this time: back off and try again
                item.attempts += 1
                self.retries += 1
                retry_after = exc.retry_after if isinstance(exc, DeliveryFailed) else None
                delay = self.backoff.delay(item.attempts, retry_after)
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("outbox %s: the control plane did not take event %s (%s): %s; %d pending, "
                                "retrying with backoff (up to %.3g s)", self.name, item.event.event_id,
                                item.event.kind, exc or type(exc).__name__, len(self._queue), self.backoff.cap)
                else:
                    log.debug("outbox %s: attempt %d of %s failed: %s", self.name, item.attempts,
                              item.event.event_id, exc)
                await self._pause(delay)
                continue
            await self._disk(self._delete, item.seq)
            self._forget(item)
            self.delivered += 1
            if self._failing_since is not None:
                log.info("outbox %s: delivering again after %.1f s; %d pending", self.name,
                         time.monotonic() - self._failing_since, len(self._queue))
                self._failing_since = None

    async def _pause(self, delay: float) -> None:
        """Wait out a backoff; closing cuts the first wait short (one more try before giving up)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._hurry.wait()
        self._hurry.clear()

    def _forget(self, item: _Pending) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(item)

    def _delete(self, seq: int) -> None:
        assert self._db is not None
        self._db.execute("DELETE FROM pending WHERE seq = ?", (seq,))

    def _to_dead_letters(self, item: _Pending, reason: str) -> None:
        assert self._db is not None
        with self._db:  # one transaction: moved, never copied or lost
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letters (seq, event_id, body, stored_at, failed_at, attempts, reason) "
                "SELECT seq, event_id, body, stored_at, ?, ?, ? FROM pending WHERE seq = ?",
                (time.time(), item.attempts, reason, item.seq))
            self._db.execute("DELETE FROM pending WHERE seq = ?", (item.seq,))

    async def _disk(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # ------------------------------------------------------------------ what operators and tests read

    @property
    def pending(self) -> int:
        return len(self._queue)

    def oldest_pending_age(self) -> float:
        """Seconds since the oldest undelivered event was stored (0 when none is pending)."""
        return max(0.0, time.time() - self._queue[0].stored_at) if self._queue else 0.0

    def pending_events(self) -> list[VisitEvent]:
        return [p.event for p in self._queue]

    async def read_dead_letters(self) -> list[DeadLetter]:
        def read() -> list[DeadLetter]:
            assert self._db is not None
            rows = self._db.execute("SELECT body, reason, attempts FROM dead_letters ORDER BY seq").fetchall()
            return [DeadLetter(VisitEvent.from_json(json.loads(b)), r, a) for b, r, a in rows]

        return await self._disk(read)

    async def drained(self, within: float) -> bool:
        """Wait until nothing is pending (True) or `within` seconds pass (False)."""
        deadline = time.monotonic() + within
        while self._queue:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


class OutboxCollector(Collector):
    """Prometheus metrics of one outbox, read at scrape time."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        o = self.outbox
        labels = ["outbox"]
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily("openvisit_outbox_pending", "Visit events stored and not yet acknowledged",
                              labels=labels),
            GaugeMetricFamily("openvisit_outbox_oldest_pending_seconds",
                              "Age of the oldest visit event not yet acknowledged", labels=labels),
            CounterMetricFamily("openvisit_outbox_delivered", "Visit events acknowledged by the control plane",
                                labels=labels),
            CounterMetricFamily("openvisit_outbox_retries", "Delivery attempts that failed and will be retried",
                                labels=labels),
            CounterMetricFamily("openvisit_outbox_dead_letters",
                                "Visit events the control plane refused for good (kept in the dead_letters table)",
                                labels=labels),
        ]
        values = (o.pending, o.oldest_pending_age(), o.delivered, o.retries, o.dead_letters)
        for family, value in zip(families, values, strict=True):
            family.add_metric([o.name], value)
            yield family
