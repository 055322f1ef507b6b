"""Media sessions and media-node leases: how the control plane knows what the media plane is doing
even when a node dies without a word (S5, S6, M6, M8).

- Each room a node runs is a *media session* (one per visit per node start). Its events and the
  node's heartbeats name it and carry its connected seconds (both parties present with media
  flowing), so a crash loses at most one heartbeat interval of connected time.
- A node's heartbeat renews its *lease*. `LeaseWatcher` notices a node whose lease lapsed within
  `media_lease_seconds` (real time, not the movable test clock: a lease is about a process being
  alive): its live sessions become `lost` and their visits `interrupted_at`. The visit stays
  joinable until its end (S5); a node that comes back with the same session restores it.
- At the end, `outcome_inputs` gives the outcome rules (domain/outcomes.py) the total connected
  time and whether an interruption was never resumed (then the visit is `failed`, credited, M6).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_api.context import AppContext
from control_api.db.models import MediaNode, MediaSession, Visit
from control_api.domain.outcomes import LIVE, SessionView, interrupted_without_resuming
from openvisit.tasks import cancel_and_wait

log = logging.getLogger(__name__)
UNKNOWN_NODE = "unknown"


@dataclass(frozen=True)
class SessionReport:
    """One live room, as a node's heartbeat reports it."""

    session_id: str
    visit_id: str
    connected_seconds: int


async def note_session_event(session: AsyncSession, *, visit: Visit, session_id: str, node_id: str | None,
                             kind: str, connected_seconds: int | None, now: datetime,
                             watcher: LeaseWatcher | None = None) -> None:
    """An event named its session: create or update it. `ended` closes it with its final count.
    A session first heard of through an event (a restarted node replaying what its predecessor
    left in the outbox) is watched like any other: its node gets a lease, and a node already
    taken for gone makes it lost at once (S6: it cannot resume by itself)."""
    row = await session.get(MediaSession, session_id, with_for_update=True)
    if row is None:
        node = node_id or UNKNOWN_NODE
        row = MediaSession(id=session_id, visit_id=visit.id, node_id=node, state="live",
                           started_at=now, last_seen_at=now, connected_seconds=0)
        session.add(row)
        known = await session.get(MediaNode, node)
        if known is not None and known.lost_at is not None and kind != "ended":
            row.state = "lost"
            visit.interrupted_at = visit.interrupted_at or now
        elif watcher is not None:
            watcher.seen(node)
    elif row.visit_id != visit.id:  # a session belongs to one visit; ignore a confused report
        log.warning("session %s reported for visit %s, but it belongs to %s", session_id, visit.id, row.visit_id)
        return
    row.last_seen_at = now
    # A lost session is restored only by its node's heartbeat (an event may be a replay, long
    # after the node died); but its own `ended` says it did end properly: no longer an interruption.
    if kind == "ended":
        was_lost = row.state == "lost"
        row.state = "ended"
        if connected_seconds is not None:
            row.connected_seconds = max(row.connected_seconds, connected_seconds)
        if was_lost:
            await _clear_interruption_unless_lost(session, row.visit_id)
    await session.flush()


async def record_heartbeat(session: AsyncSession, *, node_id: str, started_at: datetime,
                           sessions: Iterable[SessionReport], now: datetime) -> None:
    """Renew the node's lease and bring its sessions' connected seconds up to date."""
    node = await session.get(MediaNode, node_id, with_for_update=True)
    if node is None:
        node = MediaNode(id=node_id, started_at=started_at, last_seen_at=now)
        session.add(node)
    node.last_seen_at = now
    if node.lost_at is not None:
        log.info("media node %s is back (it was taken for gone at %s)", node_id, node.lost_at.isoformat())
        node.lost_at = None
    for report in sorted(sessions, key=lambda r: r.visit_id):
        visit = await session.get(Visit, report.visit_id, with_for_update=True)  # visit, then session
        if visit is None or visit.status not in LIVE:
            continue
        row = await session.get(MediaSession, report.session_id, with_for_update=True)
        if row is None:
            row = MediaSession(id=report.session_id, visit_id=visit.id, node_id=node_id, state="live",
                               started_at=now, last_seen_at=now, connected_seconds=0)
            session.add(row)
        elif row.visit_id != visit.id or row.state == "ended":
            continue
        row.last_seen_at = now
        row.connected_seconds = max(row.connected_seconds, report.connected_seconds)
        if row.state == "lost":
            await _restore(session, row)
    await session.flush()


async def _restore(session: AsyncSession, row: MediaSession) -> None:
    """A session taken for lost turned out alive (a slow or cut-off node came back): the visit is
    no longer interrupted unless another of its sessions is still lost."""
    row.state = "live"
    await _clear_interruption_unless_lost(session, row.visit_id)


async def _clear_interruption_unless_lost(session: AsyncSession, visit_id: str) -> None:
    await session.flush()
    still_lost = await session.scalar(select(MediaSession.id).where(
        MediaSession.visit_id == visit_id, MediaSession.state == "lost").limit(1))
    if still_lost is None:
        visit = await session.get(Visit, visit_id)
        if visit is not None and visit.status in LIVE:
            visit.interrupted_at = None


async def mark_node_lost(session: AsyncSession, node_id: str, now: datetime) -> list[str]:
    """The node's lease lapsed: its live sessions are lost and their visits interrupted (S5:
    rejoinable until the end; S6: `failed` if never resumed). Returns the visits interrupted."""
    node = await session.get(MediaNode, node_id, with_for_update=True)
    if node is None:  # known only from its events: remember it is gone (a late event of it opens a lost session)
        session.add(MediaNode(id=node_id, started_at=now, last_seen_at=now, lost_at=now))
    elif node.lost_at is None:
        node.lost_at = now
    # Lock order as everywhere else: visits (by id), then their sessions (no deadlock with an
    # event being applied to one of these visits at the same moment).
    visit_ids = sorted(set((await session.scalars(select(MediaSession.visit_id).where(
        MediaSession.node_id == node_id, MediaSession.state == "live"))).all()))
    visits = {v.id: v for v in (await session.scalars(select(Visit).where(Visit.id.in_(visit_ids))
                                                       .order_by(Visit.id).with_for_update())).all()}
    rows = (await session.scalars(select(MediaSession).where(
        MediaSession.node_id == node_id, MediaSession.state == "live").order_by(MediaSession.visit_id)
        .with_for_update())).all()
    interrupted = []
    for row in rows:
        row.state = "lost"
        visit = visits.get(row.visit_id)
        if visit is not None and visit.status in LIVE:
            visit.interrupted_at = visit.interrupted_at or now
            visit.updated_at = now
            interrupted.append(visit.id)
    await session.flush()
    return interrupted


async def has_live_session_on_live_node(session: AsyncSession, visit_id: str, watcher: LeaseWatcher | None) -> bool:
    """A node that still holds the visit will report its end itself (through its outbox)."""
    if watcher is None:
        return False
    nodes = (await session.scalars(select(MediaSession.node_id).where(
        MediaSession.visit_id == visit_id, MediaSession.state == "live"))).all()
    return any(watcher.is_alive(n) for n in nodes)


@dataclass(frozen=True)
class OutcomeInputs:
    connected_seconds: int | None  # None: no session ever named (reports without sessions)
    interrupted: bool  # a session was lost and nothing resumed after it


async def outcome_inputs(session: AsyncSession, visit: Visit) -> OutcomeInputs:
    rows = (await session.scalars(select(MediaSession).where(MediaSession.visit_id == visit.id))).all()
    if not rows:
        return OutcomeInputs(None, False)
    views = [SessionView(r.started_at, r.state == "lost", r.connected_seconds) for r in rows]
    return OutcomeInputs(sum(v.connected_seconds for v in views), interrupted_without_resuming(views))


class LeaseWatcher:
    """Notices media nodes that stopped heartbeating, within `lease` seconds of real time.

    It lives in the control API's process: leases are judged on a monotonic clock (the movable
    test clock may jump hours). After a control-plane restart every known node gets a full lease
    to check in before it is taken for gone; the embedded media plane of a killed server never
    does, so its visits are interrupted one lease after the restart."""

    def __init__(self, ctx: AppContext, *, lease: float, interval: float,
                 on_lost: Callable[[str, int], None] | None = None) -> None:
        self.ctx = ctx
        self.on_lost = on_lost  # (node id, visits interrupted): metrics
        self.lease = lease
        self.interval = interval
        self._heard: dict[str, float] = {}
        self._lost: set[str] = set()
        self._local: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def heard(self, node_id: str) -> None:
        self._heard[node_id] = time.monotonic()
        self._lost.discard(node_id)

    def local(self, node_id: str) -> None:
        """The media plane embedded in this process: alive as long as the process is, even when a
        heartbeat cannot be written (the database restarting must not interrupt its visits)."""
        self._local.add(node_id)
        self.heard(node_id)

    def seen(self, node_id: str) -> None:
        """A node named by an event but never heard from: it gets a lease from now, so a session it
        left behind is taken for lost if the node never checks in."""
        if node_id not in self._lost and node_id not in self._local:
            self._heard.setdefault(node_id, time.monotonic())

    def is_alive(self, node_id: str) -> bool:
        if node_id in self._local:
            return True
        at = self._heard.get(node_id)
        return at is not None and time.monotonic() - at < self.lease

    async def start(self) -> None:
        async with self.ctx.read_sessions() as session:
            known = (await session.scalars(select(MediaNode.id).where(MediaNode.lost_at.is_(None)))).all()
            orphaned = (await session.scalars(select(MediaSession.node_id).where(
                MediaSession.state == "live").distinct())).all()
        started = time.monotonic()
        for node_id in {*known, *orphaned}:
            self._heard.setdefault(node_id, started)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def check(self) -> list[str]:
        """Mark every node whose lease lapsed; returns the visits that became interrupted."""
        now_mono = time.monotonic()
        expired = [n for n, at in self._heard.items()
                   if now_mono - at >= self.lease and n not in self._lost and n not in self._local]
        interrupted: list[str] = []
        for node_id in expired:
            silent = now_mono - self._heard[node_id]
            async with self.ctx.sessions() as session, session.begin():
                visits = await mark_node_lost(session, node_id, self.ctx.clock.now())
            self._lost.add(node_id)
            self._heard.pop(node_id, None)
            interrupted += visits
            if self.on_lost is not None:
                self.on_lost(node_id, len(visits))
            log.warning("media node %s silent for %.1f s: taken for gone; %d live visit(s) interrupted "
                        "(rejoinable until their end, S5)", node_id, silent, len(visits))
        return interrupted

    async def _run(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
                failing = False
            except Exception as exc:  # the database may be down: say so once, keep watching
                if not failing:
                    log.warning("media lease check failed (%s); retrying every %.1f s", exc, self.interval)
                failing = True


def heartbeat_answer(ctx: AppContext) -> dict[str, Any]:
    """What a node learns from each heartbeat: the control plane's clock (a node follows the
    movable test clock in demo and test mode) and its lease."""
    return {"now": ctx.clock.now().isoformat(), "clock_movable": ctx.clock.movable,
            "lease_seconds": ctx.settings.media_lease_seconds,
            "interval_seconds": ctx.settings.media_heartbeat_seconds}
