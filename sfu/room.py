"""A Room: one visit's live session on this SFU. It owns the visit's Router and one peer
connection per participant, and enforces the schedule (S1-S3, S5) and officer disconnects (S4).

Negotiation is one offer from each client, answered once: the room pre-creates an audio and a
video transceiver (VP8 and Opus only, so every leg carries the same codec) whose senders carry
a `ForwardingTrack`; when the other party publishes, leaves or rejoins, only the attached
consumer changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from sfu.aiortc_adapter import (
    ForwardingTrack,
    clamp_publisher_remb,
    forward_through,
    rtc_configuration,
    send_pli,
    tap_receiver,
)
from sfu.events import VisitEvent, VisitEventSink
from sfu.monitoring.monitor_session import MonitorSession
from sfu.recording.recorder import VisitRecorder
from sfu.recording.storage import RecordingStorage
from sfu.router import EncodedFrame, Producer, Router
from sfu.router.frames import Kind

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
Hangup = Callable[[], None]  # closes a client's signaling socket (without waiting for it)
Side = Literal["visitor", "resident"]
DisconnectReason = Literal["conduct", "facility", "technical"]
DEFAULT_WARNINGS = (120, 30)  # rule S3: seconds before the end
DEFAULT_MEDIA_TIMEOUT = 30.0  # both connected after the start, and no frame forwarded for this long: failed
DEFAULT_STALL_SECONDS = 4.0  # a participant whose media stops this long is dropped (a frozen client, S5)
FLOWING_WINDOW = 1.0  # a party counts as connected while its media arrived within this (Opus: every 20 ms)


def side_of(role: str) -> Side:
    return "resident" if role == "resident" else "visitor"


async def add_ice_candidate(pc: RTCPeerConnection, candidate: str, sdp_mid: str | None,
                            sdp_mline_index: int | None) -> None:
    """Trickle ICE into `pc`; "" ends the candidates. Raises ValueError for a malformed one."""
    if not candidate:
        await pc.addIceCandidate(None)
        return
    if sdp_mid is None and sdp_mline_index is None:
        raise ValueError("a candidate needs sdpMid or sdpMLineIndex")
    fields = candidate.removeprefix("candidate:").split()
    if len(fields) < 8 or fields[6] != "typ" or not fields[1].isdigit() or not fields[3].isdigit() \
            or not fields[5].isdigit():
        raise ValueError(f"not an ICE candidate: {candidate[:80]!r}")
    parsed: RTCIceCandidate = candidate_from_sdp(" ".join(fields))
    parsed.sdpMid, parsed.sdpMLineIndex = sdp_mid, sdp_mline_index
    await pc.addIceCandidate(parsed)


@dataclass
class Participant:
    participant_id: str
    side: Side
    send: Send
    pc: RTCPeerConnection
    outgoing: dict[Kind, ForwardingTrack]
    producers: dict[Kind, Producer] = field(default_factory=dict)
    connected_since: float | None = None
    dropped: bool = False
    hangup: Hangup | None = None
    last_media: float | None = None  # loop time its media was last seen arriving (lobby included)
    frames_seen: int = 0  # frames its producers published, at the last look

    def frames_published(self) -> int:
        """Frames this party's producers published (those sent past Python included)."""
        return sum(p.frames_published for p in self.producers.values())


class RoomClosedError(Exception):
    pass


@dataclass
class RoomTotals:
    frames_forwarded: int = 0
    bytes_received: int = 0
    plis_sent: int = 0
    packets_retransmitted: int = 0
    datagrams_refused: int = 0


class Room:
    TICK = 0.25  # seconds between looks at the clock: the end is enforced within this

    def __init__(self, visit_id: str, *, privileged: bool, starts_at: datetime, ends_at: datetime,
                 events: VisitEventSink, now: Callable[[], datetime],
                 ice_servers: Sequence[dict[str, Any]] = (), warnings: Sequence[int] = DEFAULT_WARNINGS,
                 media_timeout: float = DEFAULT_MEDIA_TIMEOUT, recordings: RecordingStorage | None = None,
                 on_closed: Callable[[Room], None] | None = None,
                 on_ending: Callable[[Room], Awaitable[None]] | None = None,
                 on_first_frame: Callable[[float], None] | None = None, session_id: str | None = None,
                 node_id: str | None = None, stall_seconds: float = DEFAULT_STALL_SECONDS) -> None:
        self.visit_id = visit_id
        # One room is one media session of the visit: its events and heartbeats name it, so the
        # control plane adds up connected time across a node's crash and the rejoin elsewhere (S5).
        self.session_id = session_id or f"room-{uuid.uuid4().hex}"
        self.node_id = node_id
        self.stall_seconds = stall_seconds
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.router = Router(visit_id, privileged=privileged, on_refusal=self._refused)
        self.monitors: dict[str, MonitorSession] = {}
        self.recordings = recordings
        self.recorder: VisitRecorder | None = None  # R1: social visits, from the start (P1: never privileged)
        self.events = events
        self.now = now
        self.ice_servers = ice_servers
        self.warnings = sorted(warnings, reverse=True)
        self.participants: dict[Side, Participant] = {}
        self.closed = False
        self.started = False
        self._media_open = False
        self.end_reason: str | None = None
        self._on_closed = on_closed
        self._on_ending = on_ending
        self._on_first_frame = on_first_frame
        self.totals = RoomTotals()  # counts of producers already removed (live ones count themselves)
        self._loop = asyncio.get_running_loop()
        self._connected_seconds = 0.0  # both present with media flowing, inside the visit (S1, S6, M8)
        self._last_tick: float | None = None
        self._both_since: float | None = None
        self._both_ever = False  # both parties were connected at the same time at some point
        self.media_flowed = False  # a frame reached the other party
        self.media_timeout = media_timeout
        self._silent_since: float | None = None  # both connected after the start, nothing forwarded yet
        self._ending: asyncio.Task[None] | None = None
        self._timer = asyncio.create_task(self._enforce_schedule())

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
        pc = RTCPeerConnection(rtc_configuration(self.ice_servers))
        outgoing: dict[Kind, ForwardingTrack] = {}
        kinds: tuple[Kind, ...] = ("audio", "video")
        for kind in kinds:
            track = ForwardingTrack(kind)
            transceiver = pc.addTransceiver(track, direction="sendrecv")
            codecs = [c for c in RTCRtpSender.getCapabilities(kind).codecs
                      if c.mimeType.lower() in ("video/vp8", "audio/opus")]
            transceiver.setCodecPreferences(codecs)
            forward_through(transceiver.sender, track)
            outgoing[kind] = track
        participant = Participant(participant_id, side, send, pc, outgoing, hangup=hangup)
        offered_at = self._loop.time()
        video_track = outgoing["video"]

        def first_frame_sent(_frame: EncodedFrame) -> None:  # join-to-first-frame, once per participant
            video_track.on_frame_sent = None
            if self._on_first_frame is not None:
                self._on_first_frame(self._loop.time() - offered_at)

        video_track.on_frame_sent = first_frame_sent
        self.participants[side] = participant

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            kind: Kind = "video" if track.kind == "video" else "audio"

            async def pli() -> None:
                await send_pli(receiver)

            producer = self.router.add_producer(participant_id, kind, pli)
            producer.send_bitrate_limit = clamp_publisher_remb(receiver, producer.bitrate_limit)
            participant.producers[kind] = producer
            tap_receiver(receiver, self._gate(producer, participant), producer)
            other = self.participants.get("resident" if side == "visitor" else "visitor")
            if other is not None:
                other.outgoing[kind].attach(self.router.consume(producer, f"{other.participant_id}-{kind}", "peer"))
            for monitor in self.monitors.values():
                monitor.watch(side, producer)
            if self.recorder is not None:
                try:
                    self.recorder.record(side, producer)
                except OSError as exc:  # the visit goes on without this track's recording
                    log.exception("recording %s of %s failed", kind, self.visit_id)
                    self._recording_failed(f"recording {side} {kind} could not start: {exc}")

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "connected":
                participant.connected_since = self._loop.time()
                self._update_both_connected()
            elif pc.connectionState in ("failed", "closed") and self.participants.get(side) is participant:
                await self._drop(participant, report=True)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # Receive what the other side already publishes.
        other = self.participants.get("resident" if side == "visitor" else "visitor")
        if other is not None:
            for kind, producer in other.producers.items():
                attached = outgoing[kind].consumer
                if attached is None or attached.producer is not producer:  # its on_track may have come first
                    outgoing[kind].attach(self.router.consume(producer, f"{participant_id}-{kind}", "peer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.events.report(self._event("participant_joined", participant=side))
        await self._broadcast({"type": "participant_joined", "side": side}, exclude=side)
        remaining = (self.ends_at - self.now()).total_seconds()
        for threshold in self.warnings:
            if remaining <= threshold:
                await send({"type": "warning", "seconds_left": max(0, int(remaining))})
                break
        return pc.localDescription.sdp

    def _event(self, kind: Any, **fields: Any) -> VisitEvent:
        """An event of this room's session (at the room's clock unless `occurred_at` is given)."""
        at = fields.pop("occurred_at", None) or self.now()
        return VisitEvent(self.visit_id, kind, at, session_id=self.session_id, node_id=self.node_id, **fields)

    def _gate(self, producer: Producer, participant: Participant) -> Callable[[EncodedFrame], None]:
        """S1: participants may wait in the lobby, but media flows only from the start."""
        def on_frame(frame: EncodedFrame) -> None:
            if self.closed:
                return
            if not self._media_open:  # read the clock only until the start: it never moves back
                participant.last_media = self._loop.time()  # lobby frames (from the start: counters)
                if self.now() < self.starts_at:
                    return
                self._media_open = True
                self._start_recording()
            if not self.started and len(self.participants) == 2:
                self.started = True
                self._loop.create_task(self.events.report(self._event("started")))
            producer.publish(frame)

        return on_frame

    def _start_recording(self) -> None:
        """R1: a social visit is recorded from the moment its media opens (P1: a privileged
        visit's room never even asks)."""
        if self.recordings is None or self.router.privileged or self.recorder is not None:
            return
        if not self.recordings.accepting():  # below the free-space threshold: refuse, loudly
            self.recordings.counters.refused += 1
            health = self.recordings.health()
            self._recording_failed(f"recording refused: {health['free_bytes']} bytes free in the recordings "
                                   f"folder, below the {health['min_free_bytes']} bytes threshold", count=False)
            return
        try:
            self.recorder = VisitRecorder(self.visit_id, self.router, self.recordings, now=self.now,
                                          on_failure=self._recording_failed)
            for side, participant in self.participants.items():
                for producer in participant.producers.values():
                    self.recorder.record(side, producer)
        except OSError as exc:  # a full or broken disk must not break the visit's media path
            log.exception("recording %s could not start", self.visit_id)
            self._recording_failed(f"recording could not start: {exc}")

    def _recording_failed(self, reason: str, *, count: bool = True) -> None:
        """Storage failures are loud: a metric, and a `recording_failed` event (audited, and the
        visit's recording marked incomplete for staff). The call itself goes on."""
        if count and self.recordings is not None:
            self.recordings.counters.failed += 1
        log.error("recording of visit %s: %s", self.visit_id, reason)
        self._loop.create_task(self.events.report(self._event("recording_failed", detail=reason[:500])))

    def _update_both_connected(self) -> None:
        """Both parties' connections are up (ICE + DTLS): what the media-failure check (M6) watches.
        Connected time for the outcome and money is counted from media flowing (`_watch_media`)."""
        both = len(self.participants) == 2 and all(p.connected_since is not None for p in self.participants.values())
        if both and self._both_since is None:
            self._both_since = self._loop.time()
            self._both_ever = True
        elif not both and self._both_since is not None:
            self._both_since = None

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

    async def leave(self, side: Side) -> None:
        participant = self.participants.get(side)
        if participant is not None:
            await self._drop(participant, report=True)

    async def _drop(self, participant: Participant, *, report: bool, detail: str | None = None,
                    at: datetime | None = None) -> None:
        if participant.dropped:
            return
        participant.dropped = True
        if self.participants.get(participant.side) is participant:
            participant.connected_since = None
            self._update_both_connected()
            del self.participants[participant.side]
        for producer in participant.producers.values():
            self.totals.frames_forwarded += sum(c.frames_delivered for c in producer.consumers)
            self.totals.bytes_received += producer.bytes_published
            self.totals.plis_sent += producer.keyframes.plis_sent
            await self.router.remove_producer(producer)
        for track in participant.outgoing.values():
            self.totals.packets_retransmitted += track.packets_retransmitted
            self.totals.datagrams_refused += track.datagrams_refused
            track.stop()
        await participant.pc.close()
        if report and not self.closed:
            await self.events.report(self._event("participant_left", participant=participant.side, detail=detail,
                                                 occurred_at=at))
            await self._broadcast({"type": "participant_left", "side": participant.side,
                                   **({"reason": detail} if detail else {})})

    # ---------------------------------------------------------------- ending (S2, S3, S4)

    async def _enforce_schedule(self) -> None:
        """S2: the visit ends at its scheduled end, to the second, however late anyone joined.
        S3: warnings before the end. The clock is re-read every tick, so it may be a movable
        test clock."""
        pending = list(self.warnings)
        while True:
            remaining = (self.ends_at - self.now()).total_seconds()
            if remaining <= 0:
                break
            await self._watch_media()
            if self._media_never_flowed():
                await self.end("failed", message="no media could flow between the parties; the visit will be credited")
                return
            if pending and remaining <= pending[0]:
                while pending and remaining <= pending[0]:
                    pending.pop(0)
                await self._broadcast({"type": "warning", "seconds_left": round(remaining)})
            next_event = min([remaining, *[remaining - t for t in pending]])
            await asyncio.sleep(min(max(next_event, 0.01), self.TICK))
        if self._both_ever and not self._check_media_flowed():
            await self.end("failed", message="no media could flow between the parties; the visit will be credited")
        else:
            await self.end("completed", message="the visit reached its scheduled end")

    async def _watch_media(self) -> None:
        """Every tick: whose media is arriving (C fast-path frames included, through the producers'
        counters); add the tick to the connected time when both parties' media flows inside the
        visit (S6, M8: frozen or silent time is not connected time); drop a party whose media
        stopped for `stall_seconds` (a frozen or vanished client whose socket is still open), so
        the other side is told and the party can rejoin (S5)."""
        t = self._loop.time()
        for participant in self.participants.values():
            frames = participant.frames_published()
            if frames != participant.frames_seen:
                participant.frames_seen = frames
                participant.last_media = t
        last, self._last_tick = self._last_tick, t
        flowing = [p for p in self.participants.values()
                   if p.last_media is not None and t - p.last_media <= FLOWING_WINDOW]
        if last is not None and len(flowing) == 2 and self._media_open:
            self._connected_seconds += min(t - last, 1.0)
        for participant in list(self.participants.values()):
            if participant.last_media is not None and t - participant.last_media >= self.stall_seconds:
                await self._stalled(participant, t - participant.last_media)

    async def _stalled(self, participant: Participant, silent_for: float) -> None:
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

    @property
    def connected_seconds(self) -> int:
        """Both parties present with media flowing, inside the visit, so far (heartbeats carry it)."""
        return int(self._connected_seconds)

    def packets_retransmitted(self) -> int:
        """RTP packets sent again to the participants on their NACKs (left and present)."""
        return self.totals.packets_retransmitted + sum(
            track.packets_retransmitted for p in self.participants.values() for track in p.outgoing.values())

    def datagrams_refused(self) -> int:
        """RTP datagrams to the participants that their sockets refused (send buffer full)."""
        return self.totals.datagrams_refused + sum(
            track.datagrams_refused for p in self.participants.values() for track in p.outgoing.values())

    def _check_media_flowed(self) -> bool:
        if not self.media_flowed:
            self.media_flowed = self.totals.frames_forwarded > 0 or any(
                c.frames_delivered for p in self.router.producers for c in p.consumers if c.role == "peer")
        return self.media_flowed

    def _media_never_flowed(self) -> bool:
        """Our side failed (M6): both parties connected after the start, yet no frame reached
        either of them within `media_timeout`. Read every tick."""
        if self._both_since is None or self.now() < self.starts_at or self._check_media_flowed():
            self._silent_since = None
            return False
        if self._silent_since is None:
            self._silent_since = self._loop.time()
        return self._loop.time() - self._silent_since >= self.media_timeout

    async def disconnect(self, reason: DisconnectReason, note: str | None = None) -> None:
        """S4: an officer ends the visit at once; both parties are told why."""
        message = note or f"disconnected by an officer ({reason})"
        await self.end("disconnected", disconnect_reason=reason, message=message)

    async def end(self, reason: Literal["completed", "disconnected", "failed"], *,
                  disconnect_reason: DisconnectReason | None = None, message: str) -> None:
        """End the session: tell everyone why, close their connections and signaling sockets,
        report `ended` with the connected seconds, then close the recording. Idempotent: whoever
        calls second (a shutdown while the room is already ending at its scheduled time) waits
        for the first ending to finish, so nothing it still has to report is cut off."""
        if self._ending is None:
            self._ending = self._loop.create_task(self._end(reason, disconnect_reason, message))
        await asyncio.shield(self._ending)

    async def _end(self, reason: Literal["completed", "disconnected", "failed"],
                   disconnect_reason: DisconnectReason | None, message: str) -> None:
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
            self._both_since = None
            await self._broadcast({"type": "ended", "reason": reason, "disconnect_reason": disconnect_reason,
                                   "message": message})
            for participant in list(self.participants.values()):
                await self._drop(participant, report=False)
                if participant.hangup is not None:
                    participant.hangup()
            for monitor_id, monitor in list(self.monitors.items()):
                with contextlib.suppress(Exception):
                    await monitor.send({"type": "ended", "reason": reason, "disconnect_reason": disconnect_reason,
                                        "message": message})
                await self.remove_monitor(monitor_id)
            await self.router.close()
            self._timer.cancel()
            try:
                await self.events.report(self._event("ended", reason=reason, disconnect_reason=disconnect_reason,
                                                     connected_seconds=int(self._connected_seconds), detail=message))
            except Exception:  # the outbox could not store it (its disk is full): the sweep decides later
                log.exception("visit %s: the `ended` event could not be stored", self.visit_id)
            if self.recorder is not None:
                await self._close_recording()
        finally:  # the room is released whatever happened above
            self.closed = True
            if self._on_closed is not None:
                self._on_closed(self)

    async def _close_recording(self) -> None:
        """R1, R2: finish this room's segment and report its manifest, even after a write error
        (what was written is kept, marked truncated). Never raises: the visit is over either way."""
        assert self.recorder is not None
        try:
            manifest = await self.recorder.close()
        except Exception as exc:  # the files stay as *.partial: recovered at the next start
            log.exception("closing the recording of %s failed", self.visit_id)
            with contextlib.suppress(Exception):
                await self.events.report(self._event("recording_failed",
                                                     detail=f"closing the recording failed: {exc}"[:500]))
            return
        try:
            await self.events.report(self._event("recording_closed", manifest=manifest))
        except Exception:
            log.exception("reporting the recording of %s failed", self.visit_id)

    async def _broadcast(self, message: dict[str, Any], exclude: Side | None = None) -> None:
        for side, participant in list(self.participants.items()):
            if side != exclude:
                with contextlib.suppress(Exception):  # a dead socket must not stop the others
                    await participant.send(message)
