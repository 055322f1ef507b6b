"""The SFU as a whole: its rooms, created from the first valid join token of a visit.

This is also the in-process implementation of the command seam (open a visit's room implicitly
on first join, `disconnect` on an officer's command); a Redis-backed implementation for several
SFU workers exposes the same methods.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openvisit.join_tokens import JoinClaims
from sfu.aiortc_adapter import install_fast_clock
from sfu.device_check import DeviceChecks
from sfu.events import VisitEvent, VisitEventSink
from sfu.media_quality import MediaQuality
from sfu.node_state import NodeState
from sfu.recording.recovery import recover_orphans, unreported_segments
from sfu.recording.storage import LocalFolderStorage, RecordingStorage
from sfu.room import DEFAULT_MEDIA_TIMEOUT, DEFAULT_STALL_SECONDS, DEFAULT_WARNINGS, DisconnectReason, Room

log = logging.getLogger(__name__)
REFUSALS_PER_MINUTE = 10  # refused join attempts reported one by one per source address


@dataclass(frozen=True)
class SfuStats:
    frames_forwarded: int
    bytes_received: int
    plis_sent: int
    packets_retransmitted: int = 0
    datagrams_refused: int = 0


class Sfu:
    def __init__(self, events: VisitEventSink, now: Callable[[], datetime], *,
                 ice_servers: Sequence[dict[str, Any]] = (), warnings: Sequence[int] = DEFAULT_WARNINGS,
                 media_timeout: float = DEFAULT_MEDIA_TIMEOUT, recordings: RecordingStorage | None = None,
                 node_id: str | None = None, stall_seconds: float = DEFAULT_STALL_SECONDS,
                 state: NodeState | None = None) -> None:
        install_fast_clock()  # ~10% less CPU per forwarded packet (A/B at 4 rooms: 0.079 vs 0.089 cores/room)
        # A new id per process start: a restarted node is a new node, so the control plane can tell
        # the sessions the old one lost from the ones the new one runs (S5, S6).
        self.node_id = node_id or f"node-{uuid.uuid4().hex}"
        self.started_at = now()
        self._started_wall = time.time()  # files finished before this moment belong to an earlier run
        self.stall_seconds = stall_seconds
        self.events = events
        self.now = now
        self.ice_servers = ice_servers
        self.warnings = warnings
        self.media_timeout = media_timeout
        self.recordings = recordings
        self.rooms: dict[str, Room] = {}
        self.device_checks = DeviceChecks(ice_servers)  # loopback tests: no room, no events (issue 13)
        # Used join tokens, resume tokens and ended visits, kept across a restart (sfu/node_state.py).
        self.state = state or NodeState()
        self.ended: set[str] = set(self.state.ended)  # visits that ended here: a late join must not reopen them (S2)
        self.join_to_first_frame: list[float] = []  # seconds, for the metrics histogram
        self.media_quality = MediaQuality()  # loss, jitter, freezes of the media received (metrics)
        self._closed_totals = SfuStats(0, 0, 0)
        self._refusals: dict[str, list[float]] = {}  # source -> [window start, attempts, dropped]
        self.refusal_window = 60.0  # seconds per source over which REFUSALS_PER_MINUTE applies

    def room_for(self, claims: JoinClaims) -> Room | None:
        """The visit's room, opened by its first participant. A monitor never opens one: it may
        only watch a visit that is live here."""
        if claims.visit_id in self.ended:
            return None
        room = self.rooms.get(claims.visit_id)
        if room is None and claims.participant_role != "monitor":
            room = Room(claims.visit_id, privileged=claims.visit_type == "privileged",
                        starts_at=claims.visit_starts_at, ends_at=claims.visit_ends_at, events=self.events,
                        now=self.now, ice_servers=self.ice_servers, warnings=self.warnings,
                        media_timeout=self.media_timeout, recordings=self.recordings, on_closed=self._closed,
                        on_first_frame=self._first_frame, stall_seconds=self.stall_seconds, on_ending=self._ending,
                        node_id=self.node_id, media_quality=self.media_quality)
            self.rooms[claims.visit_id] = room
        return room

    async def claim_token(self, claims: JoinClaims) -> bool:
        """Each join token works once: a copied or replayed token cannot take over a participant's
        place or a monitor's view, not even after the node restarted (stored before the join is
        answered). A client that reconnects uses its resume token (S5) or asks for a new one."""
        return await self.state.claim(claims, self.now())

    async def report_refusal(self, visit_id: str, actor: str, reason: str, *, source: str | None = None,
                             verified: bool = False) -> None:
        """A join attempt refused before any room was involved (replayed or forged token): audited,
        with the client's address and whether `actor` was proven by a valid signature or only
        claimed. Per source at most `REFUSALS_PER_MINUTE` are reported; the rest are counted and
        summarised in one report when the minute is over, so nobody can flood the audit log."""
        key = source or "unknown"
        now = time.monotonic()
        window = self._refusals.get(key)
        if window is None or now - window[0] >= self.refusal_window:
            if window is not None and window[2]:
                await self._report_dropped(key, int(window[2]), visit_id)
            window = self._refusals[key] = [now, 0, 0]
            if len(self._refusals) > 10_000:  # bounded memory: forget the oldest sources
                for stale in sorted(self._refusals, key=lambda k: self._refusals[k][0])[:1000]:
                    del self._refusals[stale]
        window[1] += 1
        if window[1] > REFUSALS_PER_MINUTE:
            window[2] += 1
            return
        await self.events.report(VisitEvent(visit_id, "join_refused", self.now(), actor=actor[:120], detail=reason,
                                            source=source, verified=verified))

    async def _report_dropped(self, source: str, dropped: int, visit_id: str) -> None:
        await self.events.report(VisitEvent(visit_id, "join_refused", self.now(), actor="unverified",
                                            detail=f"{dropped} more refused attempts from {source} in "
                                                   f"{self.refusal_window:.0f} s were not recorded one by one "
                                                   "(rate limit)",
                                            source=source, verified=False))

    def _first_frame(self, seconds: float) -> None:
        self.join_to_first_frame.append(seconds)
        del self.join_to_first_frame[:-10000]

    async def _ending(self, room: Room) -> None:
        self.ended.add(room.visit_id)
        await self.state.mark_ended(room.visit_id, room.ends_at)

    def _closed(self, room: Room) -> None:
        self.rooms.pop(room.visit_id, None)
        self.ended.add(room.visit_id)
        self.state.visit_ended(room.visit_id, room.ends_at)
        t = room.totals
        c = self._closed_totals
        self._closed_totals = SfuStats(c.frames_forwarded + t.frames_forwarded, c.bytes_received + t.bytes_received,
                                       c.plis_sent + t.plis_sent,
                                       c.packets_retransmitted + room.packets_retransmitted(),
                                       c.datagrams_refused + room.datagrams_refused())

    def stats(self, live_producers: Sequence[Any] | None = None) -> SfuStats:
        """Totals over closed rooms and live producers (monotonic, for Prometheus counters)."""
        producers = live_producers if live_producers is not None else [
            p for r in self.rooms.values() for p in r.router.producers]
        live = [r.totals for r in self.rooms.values()]
        c = self._closed_totals
        return SfuStats(
            c.frames_forwarded + sum(t.frames_forwarded for t in live) + sum(
                x.frames_delivered for p in producers for x in p.consumers),
            c.bytes_received + sum(t.bytes_received for t in live) + sum(p.bytes_published for p in producers),
            c.plis_sent + sum(t.plis_sent for t in live) + sum(p.keyframes.plis_sent for p in producers),
            c.packets_retransmitted + sum(r.packets_retransmitted() for r in self.rooms.values()),
            c.datagrams_refused + sum(r.datagrams_refused() for r in self.rooms.values()))

    async def recover_recordings(self) -> int:
        """At start (R1, R2): finalise the segments a crash left as `*.partial` (remux, no
        transcoding) and report each recovered segment's manifest (`recovered`, `truncated`) as
        `recording_closed`; and report finished segments no signed manifest lists (their report
        was lost to a crash). Returns how many manifests were reported."""
        if not isinstance(self.recordings, LocalFolderStorage):
            return 0
        storage = self.recordings
        manifests = await asyncio.to_thread(recover_orphans, storage)
        # Finished files whose report a crash cut off (between the rename and the outbox).
        manifests += await asyncio.to_thread(unreported_segments, storage, self._started_wall)
        for manifest in manifests:
            log.warning("reporting %d recovered recording file(s) of visit %s", len(manifest["files"]),
                        manifest["visit_id"])
            try:
                await self.events.report(VisitEvent(manifest["visit_id"], "recording_closed", self.now(),
                                                    manifest=manifest))
            except Exception:
                log.exception("reporting the recovered recording of %s failed", manifest["visit_id"])
        return len(manifests)

    def health(self) -> dict[str, Any]:
        """For `GET /v1/health`: the recordings folder and whether new recordings start here."""
        recordings = self.recordings.health() if self.recordings is not None else None
        accepting = recordings is None or bool(recordings["accepting_new_recordings"])
        return {"status": "ok" if accepting else "degraded", "rooms": len(self.rooms), "recordings": recordings}

    def is_live(self, visit_id: str) -> bool:
        return visit_id in self.rooms

    async def disconnect(self, visit_id: str, reason: DisconnectReason, note: str | None = None) -> bool:
        """S4: end a live visit at once. False when this SFU has no such room."""
        room = self.rooms.get(visit_id)
        if room is None:
            return False
        await room.disconnect(reason, note)
        return True

    def live_sessions(self) -> list[dict[str, Any]]:
        """What a heartbeat reports: each live room's session and its connected seconds so far."""
        return [{"session_id": room.session_id, "visit_id": room.visit_id,
                 "connected_seconds": room.connected_seconds, "participants": sorted(room.participants)}
                for room in self.rooms.values() if not room.closed]

    async def close(self) -> None:
        """Shutting down with nowhere to hand the visits: each ends `failed` (credited, M6) and its
        parties are told why and disconnected; all rooms at once, so shutdown takes one room's time."""
        await asyncio.gather(*(room.end("failed", message="the media server shut down; the visit will be credited")
                               for room in list(self.rooms.values())), self.device_checks.close(),
                             return_exceptions=True)
        await self.media_quality.close()
