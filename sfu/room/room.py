"""A Room: one visit's live session on this SFU, the coordinator of its named parts.

It owns the visit's Router and one `ParticipantConnection` per party, wires each published track
to the other party, the hidden monitors and the recording, and enforces the schedule (S1-S3),
officer disconnects (S4) and rejoins (S5). The rules live in its parts:
- `VisitSchedule`: the start, the end and the warnings, on the room's `now` clock (S1, S2, S3);
- `Presence`: connected time from media flowing, and parties whose media stopped (S5, S6, M8);
- `MediaFailureWatch`: media that could never flow ends the visit `failed` (M6);
- `VisitRecording`: R1, R2, never for a privileged visit (P1, P2);
- `RoomTotals`: the counts of parties that left; `ice_candidates`: trickle ICE, checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from aiortc import RTCSessionDescription

from sfu.aiortc_adapter import clamp_publisher_remb, send_pli, tap_receiver
from sfu.aiortc_adapter.receive_statistics import receive_statistics
from sfu.events import VisitEvent, VisitEventSink
from sfu.media_quality import MediaQuality
from sfu.monitoring.monitor_session import MonitorSession
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import RecordingStorage
from sfu.room.ice_candidates import add_ice_candidate
from sfu.room.media_failure_watch import DEFAULT_MEDIA_TIMEOUT, MediaFailureWatch
from sfu.room.participant_connection import Hangup, ParticipantConnection, Send, Side, other_side, side_of
from sfu.room.presence import DEFAULT_STALL_SECONDS, Presence
from sfu.room.room_totals import RoomTotals
from sfu.room.visit_recording import VisitRecording
from sfu.room.visit_schedule import DEFAULT_WARNINGS, VisitSchedule
from sfu.router import EncodedFrame, Producer, Router
from sfu.router.frames import Kind

log = logging.getLogger(__name__)
DisconnectReason = Literal["conduct", "facility", "technical"]
EndReason = Literal["completed", "disconnected", "failed"]
NO_MEDIA = "no media could flow between the parties; the visit will be credited"


class RoomClosedError(Exception):
    pass


class Room:
    TICK = 0.25  # seconds between looks at the clock: the end is enforced within this

    def __init__(self, visit_id: str, *, privileged: bool, starts_at: datetime, ends_at: datetime,
                 events: VisitEventSink, now: Callable[[], datetime],
                 ice_servers: Sequence[dict[str, Any]] = (), warnings: Sequence[int] = DEFAULT_WARNINGS,
                 media_timeout: float = DEFAULT_MEDIA_TIMEOUT, recordings: RecordingStorage | None = None,
                 on_closed: Callable[[Room], None] | None = None,
                 on_ending: Callable[[Room], Awaitable[None]] | None = None,
                 on_first_frame: Callable[[float], None] | None = None, session_id: str | None = None,
                 node_id: str | None = None, stall_seconds: float = DEFAULT_STALL_SECONDS,
                 media_quality: MediaQuality | None = None) -> None:
        self.visit_id = visit_id
        self.media_quality = media_quality  # loss, jitter, freezes of what the parties publish (metrics)
        # One room is one media session of the visit: its events and heartbeats name it, so the
        # control plane adds up connected time across a node's crash and the rejoin elsewhere (S5).
        self.session_id = session_id or f"room-{uuid.uuid4().hex}"
        self.node_id = node_id
        self.events = events
        self.now = now
        self.ice_servers = ice_servers
        self._loop = asyncio.get_running_loop()
        self.router = Router(visit_id, privileged=privileged, on_refusal=self._refused)
        self.schedule = VisitSchedule(starts_at, ends_at, now, warnings)
        self.presence = Presence(stall_seconds)
        self.media_failure = MediaFailureWatch(self._frames_reached_peer, self._loop.time, timeout=media_timeout)
        self.recording = VisitRecording(visit_id, self.router, recordings, now=now, events=events, event=self._event)
        self.totals = RoomTotals()  # counts of producers already removed (live ones count themselves)
        self.participants: dict[Side, ParticipantConnection] = {}
        self.monitors: dict[str, MonitorSession] = {}
        self.closed = False
        self.started = False
        self.end_reason: str | None = None
        self._on_closed = on_closed
        self._on_ending = on_ending
        self._on_first_frame = on_first_frame
        self._ending: asyncio.Task[None] | None = None
        self._timer = asyncio.create_task(self._enforce_schedule())

    @property
    def starts_at(self) -> datetime:
        return self.schedule.starts_at

    @property
    def ends_at(self) -> datetime:
        return self.schedule.ends_at

    @property
    def recorder(self) -> VisitRecorder | None:
        return self.recording.recorder

    @property
    def media_flowed(self) -> bool:
        """A frame reached the other party."""
        return self.media_failure.media_flowed

    # ---------------------------------------------------------------- joining (S1, S5)

    async def join(self, participant_id: str, role: str, offer_sdp: str, send: Send,
                   hangup: Hangup | None = None) -> str:
        """Accept a participant's offer and return the answer. A second join of the same side
        replaces the first connection: a dropped participant rejoins; the visit does not restart.
        `hangup` closes the participant's signaling socket once the room is done with it."""
        if self.closed:
            raise RoomClosedError(self.end_reason or "the visit has ended")
        side = side_of(role)
        previous = self.participants.get(side)
        if previous is not None:  # S5: the newer connection takes the place; the older one is told why
            with contextlib.suppress(Exception):
                await previous.send({"type": "error", "code": "replaced",
                                     "message": "this place in the visit was taken by a newer connection "
                                                "(a rejoin with your join or resume token)"})
            await self._drop(previous, report=False)
            if previous.hangup is not None:
                previous.hangup()
        participant = ParticipantConnection.open(participant_id, side, send, self.ice_servers, hangup)
        pc, outgoing = participant.pc, participant.outgoing
        self._time_first_frame(participant)
        self.participants[side] = participant

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            self._published(participant, receiver, "video" if track.kind == "video" else "audio")

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                participant.connected_since = self._loop.time()
                self._connections_changed()
            elif pc.connectionState in ("failed", "closed") and self.participants.get(side) is participant:
                await self._drop(participant, report=True)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # Receive what the other side already publishes.
        other = self.participants.get(other_side(side))
        if other is not None:
            for kind, producer in other.producers.items():
                attached = outgoing[kind].consumer
                if attached is None or attached.producer is not producer:  # its on_track may have come first
                    outgoing[kind].attach(self.router.consume(producer, f"{participant_id}-{kind}", "peer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.events.report(self._event("participant_joined", participant=side))
        await self._broadcast({"type": "participant_joined", "side": side}, exclude=side)
        seconds_left = self.schedule.warning_on_join(self.schedule.remaining())
        if seconds_left is not None:
            await send({"type": "warning", "seconds_left": seconds_left})
        return pc.localDescription.sdp

    def _time_first_frame(self, participant: ParticipantConnection) -> None:
        """Join-to-first-frame (a metric), once per participant: from the offer to the first
        video frame sent to it."""
        offered_at = self._loop.time()
        video_track = participant.outgoing["video"]

        def first_frame_sent(_frame: EncodedFrame) -> None:
            video_track.on_frame_sent = None
            if self._on_first_frame is not None:
                self._on_first_frame(self._loop.time() - offered_at)

        video_track.on_frame_sent = first_frame_sent

    def _published(self, participant: ParticipantConnection, receiver: Any, kind: Kind) -> None:
        """A party's track arrived: a producer, fed by the receiver's tap through the S1 gate, sent
        to the other party, every monitor and the recording."""
        async def pli() -> None:
            await send_pli(receiver)

        side = participant.side
        producer = self.router.add_producer(participant.participant_id, kind, pli)
        producer.send_bitrate_limit = clamp_publisher_remb(receiver, producer.bitrate_limit)
        participant.producers[kind] = producer
        tap_receiver(receiver, self._gate(producer, participant), producer)
        if self.media_quality is not None:
            self.media_quality.watch(producer, side, lambda: receive_statistics(receiver))
        other = self.participants.get(other_side(side))
        if other is not None:
            other.outgoing[kind].attach(self.router.consume(producer, f"{other.participant_id}-{kind}", "peer"))
        for monitor in self.monitors.values():
            monitor.watch(side, producer)
        self.recording.record(side, producer)

    def _event(self, kind: Any, **fields: Any) -> VisitEvent:
        """An event of this room's session (at the room's clock unless `occurred_at` is given)."""
        at = fields.pop("occurred_at", None) or self.now()
        return VisitEvent(self.visit_id, kind, at, session_id=self.session_id, node_id=self.node_id, **fields)

    def _gate(self, producer: Producer, participant: ParticipantConnection) -> Callable[[EncodedFrame], None]:
        """S1: participants may wait in the lobby, but media flows only from the start."""
        schedule = self.schedule

        def on_frame(frame: EncodedFrame) -> None:
            if self.closed:
                return
            if not schedule.media_open:  # read the clock only until the start: it never moves back
                participant.last_media = self._loop.time()  # lobby frames (from the start: counters)
                if not schedule.open_media():
                    return
                self.recording.start((side, p) for side, party in self.participants.items()
                                     for p in party.producers.values())
            if not self.started and len(self.participants) == 2:
                self.started = True
                self._loop.create_task(self.events.report(self._event("started")))
            producer.publish(frame)

        return on_frame

    def _connections_changed(self) -> None:
        """Both parties' connections up (ICE + DTLS) or not: what the media-failure watch (M6)
        reads. Connected time for the outcome and money is counted from media flowing (`Presence`)."""
        self.media_failure.connections(len(self.participants) == 2 and all(
            p.connected_since is not None for p in self.participants.values()))

    async def add_candidate(self, side: Side, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
        """Trickle ICE: a candidate the client found after sending its offer ("" ends them).
        Raises ValueError for a malformed candidate."""
        participant = self.participants.get(side)
        if participant is not None and not participant.dropped:
            await add_ice_candidate(participant.pc, candidate, sdp_mid, sdp_mline_index)

    # ---------------------------------------------------------------- monitors (hidden officers)

    async def add_monitor(self, monitor_id: str, offer_sdp: str, send: Send) -> str:
        """An officer watches the live visit, unannounced and receive-only. On a privileged visit
        the router refuses (PrivilegeViolationError) and the refusal is reported (P1)."""
        if self.closed:
            raise RoomClosedError(self.end_reason or "the visit has ended")
        session = MonitorSession(monitor_id, self.router, send, self.ice_servers)
        previous = self.monitors.pop(monitor_id, None)
        if previous is not None:
            await previous.close()
        for side, participant in self.participants.items():
            for producer in participant.producers.values():
                session.watch(side, producer)
        self.monitors[monitor_id] = session

        @session.pc.on("connectionstatechange")
        async def on_state() -> None:
            if session.pc.connectionState in ("failed", "closed") and self.monitors.get(monitor_id) is session:
                await self.remove_monitor(monitor_id)

        answer = await session.answer(offer_sdp)
        await self.events.report(self._event("monitor_joined", actor=monitor_id))
        return answer

    async def add_monitor_candidate(self, monitor_id: str, candidate: str, sdp_mid: str | None,
                                    sdp_mline_index: int | None) -> None:
        session = self.monitors.get(monitor_id)
        if session is not None:
            await add_ice_candidate(session.pc, candidate, sdp_mid, sdp_mline_index)

    async def remove_monitor(self, monitor_id: str) -> None:
        session = self.monitors.pop(monitor_id, None)
        if session is not None:
            await session.close()
            await self.events.report(self._event("monitor_left", actor=monitor_id))

    def _refused(self, consumer_id: str, role: str) -> None:
        """P1: every refused recorder or monitor is reported (the control plane audits it)."""
        self._loop.create_task(self.events.report(self._event("privilege_refused", actor=consumer_id, detail=role)))

    # ---------------------------------------------------------------- leaving (S5)

    async def leave(self, side: Side) -> None:
        participant = self.participants.get(side)
        if participant is not None:
            await self._drop(participant, report=True)

    async def _drop(self, participant: ParticipantConnection, *, report: bool, detail: str | None = None,
                    at: datetime | None = None) -> None:
        if participant.dropped:
            return
        participant.dropped = True
        if self.participants.get(participant.side) is participant:
            participant.connected_since = None
            self._connections_changed()
            del self.participants[participant.side]
        for producer in participant.producers.values():
            self.totals.add_producer(producer)
            await self.router.remove_producer(producer)
        self.totals.add_senders(participant)
        await participant.close()
        if report and not self.closed:
            await self.events.report(self._event("participant_left", participant=participant.side, detail=detail,
                                                 occurred_at=at))
            await self._broadcast({"type": "participant_left", "side": participant.side,
                                   **({"reason": detail} if detail else {})})

    # ---------------------------------------------------------------- ending (S2, S3, S4)

    async def _enforce_schedule(self) -> None:
        """S2: the visit ends at its scheduled end, to the second, however late anyone joined.
        S3: warnings before the end. M6: media that never flows ends it `failed`."""
        schedule = self.schedule
        while True:
            remaining = schedule.remaining()
            if remaining <= 0:
                break
            await self._watch_media()
            if self.media_failure.never_flowed(schedule.has_started):
                await self.end("failed", message=NO_MEDIA)
                return
            seconds_left = schedule.warning_due(remaining)
            if seconds_left is not None:
                await self._broadcast({"type": "warning", "seconds_left": seconds_left})
            await asyncio.sleep(schedule.next_look(remaining, self.TICK))
        if self.media_failure.failed_at_end():
            await self.end("failed", message=NO_MEDIA)
        else:
            await self.end("completed", message="the visit reached its scheduled end")

    async def _watch_media(self) -> None:
        """Every tick: count connected time (`Presence`, C fast-path frames included through the
        producers' counters) and drop a party whose media stopped (S5)."""
        t = self._loop.time()
        self.presence.look(list(self.participants.values()), t, media_open=self.schedule.media_open)
        for participant in list(self.participants.values()):
            silent_for = self.presence.stalled(participant, t)
            if silent_for is not None:
                await self._stalled(participant, silent_for)

    async def _stalled(self, participant: ParticipantConnection, silent_for: float) -> None:
        log.warning("visit %s: %s's media stopped %.1f s ago; dropping the connection", self.visit_id,
                    participant.side, silent_for)
        with contextlib.suppress(Exception):
            await participant.send({"type": "error", "code": "media-stopped",
                                    "message": "no audio or video arrived from you for a few seconds; "
                                               "rejoin to continue (rule S5)"})
        await self._drop(participant, report=True, detail="media stopped",
                         at=self.now() - timedelta(seconds=silent_for))
        if participant.hangup is not None:
            participant.hangup()

    def _frames_reached_peer(self) -> bool:
        return self.totals.frames_forwarded > 0 or any(
            c.frames_delivered for p in self.router.producers for c in p.consumers if c.role == "peer")

    @property
    def connected_seconds(self) -> int:
        """Both parties present with media flowing, inside the visit, so far (heartbeats carry it)."""
        return int(self.presence.connected_seconds)

    def packets_retransmitted(self) -> int:
        """RTP packets sent again to the participants on their NACKs (left and present)."""
        return self.totals.packets_retransmitted + sum(p.packets_retransmitted() for p in self.participants.values())

    def datagrams_refused(self) -> int:
        """RTP datagrams to the participants that their sockets refused (send buffer full)."""
        return self.totals.datagrams_refused + sum(p.datagrams_refused() for p in self.participants.values())

    async def disconnect(self, reason: DisconnectReason, note: str | None = None) -> None:
        """S4: an officer ends the visit at once; both parties are told why."""
        message = note or f"disconnected by an officer ({reason})"
        await self.end("disconnected", disconnect_reason=reason, message=message)

    async def end(self, reason: EndReason, *, disconnect_reason: DisconnectReason | None = None,
                  message: str) -> None:
        """End the session: tell everyone why, close their connections and signaling sockets,
        report `ended` with the connected seconds, then close the recording. Idempotent: whoever
        calls second (a shutdown while the room is already ending at its scheduled time) waits
        for the first ending to finish, so nothing it still has to report is cut off."""
        if self._ending is None:
            self._ending = self._loop.create_task(self._end(reason, disconnect_reason, message))
        await asyncio.shield(self._ending)

    async def _end(self, reason: EndReason, disconnect_reason: DisconnectReason | None, message: str) -> None:
        try:
            await self._watch_media()  # count connected time up to this moment
            self.closed = True
            if self._on_ending is not None:
                try:
                    await self._on_ending(self)
                except Exception:
                    log.exception("visit %s: recording its end on the node failed", self.visit_id)
            for producer in self.router.producers:  # from now on every frame meets the closed gate
                producer.bypass_allowed = False
            self.end_reason = message
            self.media_failure.stop()
            ended = {"type": "ended", "reason": reason, "disconnect_reason": disconnect_reason, "message": message}
            await self._broadcast(ended)
            for participant in list(self.participants.values()):
                await self._drop(participant, report=False)
                if participant.hangup is not None:
                    participant.hangup()
            for monitor_id, monitor in list(self.monitors.items()):
                with contextlib.suppress(Exception):
                    await monitor.send(ended)
                await self.remove_monitor(monitor_id)
            await self.router.close()
            self._timer.cancel()
            try:
                await self.events.report(self._event("ended", reason=reason, disconnect_reason=disconnect_reason,
                                                     connected_seconds=self.connected_seconds, detail=message))
            except Exception:  # the outbox could not store it (its disk is full): the sweep decides later
                log.exception("visit %s: the `ended` event could not be stored", self.visit_id)
            await self.recording.close()
        finally:  # the room is released whatever happened above
            self.closed = True
            if self._on_closed is not None:
                self._on_closed(self)

    async def _broadcast(self, message: dict[str, Any], exclude: Side | None = None) -> None:
        for side, participant in list(self.participants.items()):
            if side != exclude:
                with contextlib.suppress(Exception):  # a dead socket must not stop the others
                    await participant.send(message)
