"""Device checks (issue 13): the media server echoes a person's own audio and video back to them.

A check is one peer connection of its own, never a visit's Room: its own Router holds the
person's two producers, and each producer's `peer` consumer forwards into the same connection's
senders, encoded frames as they arrived (no decoding, as in a visit). The browser then measures
the whole path through the server (round-trip time, loss, frame rate, bitrate) with getStats().

The router is made `privileged`, so no recorder or monitor can ever attach to it (the structure
behind P1, reused: a check is never recorded or watched). A check reports nothing to the
control plane (no events, no heartbeat sessions, no connected time, no billing). It ends on its
own after `max_seconds`, when its connection fails and when its socket closes. One open check
per account at a time, and each token opens one check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Literal

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from openvisit.device_check_tokens import DeviceCheckClaims
from sfu.aiortc_adapter import (
    ForwardingTrack,
    clamp_publisher_remb,
    forward_through,
    rtc_configuration,
    send_pli,
    tap_receiver,
)
from sfu.room import add_ice_candidate
from sfu.router import Producer, Router
from sfu.router.frames import Kind

log = logging.getLogger(__name__)
Send = Callable[[dict[str, Any]], Awaitable[None]]
EndReason = Literal["completed", "left", "failed"]
KINDS: tuple[Kind, ...] = ("audio", "video")


class CheckRefusedError(Exception):
    """A check that may not open: `code` is the signaling error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class DeviceCheckSession:
    def __init__(self, claims: DeviceCheckClaims, send: Send, *, ice_servers: Sequence[dict[str, Any]] = (),
                 on_closed: Callable[[DeviceCheckSession], None] | None = None) -> None:
        self.claims = claims
        self.account = claims.account
        self.send = send
        self._on_closed = on_closed
        # Privileged: the router refuses any recorder or monitor outright (never recorded, never watched).
        self.router = Router(f"device-check-{claims.token_id}", privileged=True)
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.outgoing: dict[Kind, ForwardingTrack] = {}
        self.producers: dict[Kind, Producer] = {}
        for kind in KINDS:
            track = ForwardingTrack(kind)
            transceiver = self.pc.addTransceiver(track, direction="sendrecv")
            transceiver.setCodecPreferences([c for c in RTCRtpSender.getCapabilities(kind).codecs
                                             if c.mimeType.lower() in ("video/vp8", "audio/opus")])
            forward_through(transceiver.sender, track)
            self.outgoing[kind] = track
        self.closed = False
        self.end_reason: EndReason | None = None
        self.opened_at = time.monotonic()
        self._ending: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(claims.max_seconds, self._time_up)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    def _on_track(self, track: Any) -> None:
        receiver = next(t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track)
        kind: Kind = "video" if track.kind == "video" else "audio"
        if self.closed or kind in self.producers:
            return

        async def pli() -> None:
            await send_pli(receiver)

        producer = self.router.add_producer(self.account, kind, pli)
        producer.send_bitrate_limit = clamp_publisher_remb(receiver, producer.bitrate_limit)
        self.producers[kind] = producer
        tap_receiver(receiver, producer.publish, producer)
        # The echo: this person's own track, back to this person, through a peer consumer.
        self.outgoing[kind].attach(self.router.consume(producer, f"echo-{kind}", "peer"))

    async def _on_state(self) -> None:
        if self.pc.connectionState == "failed":
            await self.end("failed", "the connection to the media server failed")

    def _time_up(self) -> None:
        self._ending = self._ending or asyncio.get_running_loop().create_task(
            self._end("completed", f"the check ends after {self.claims.max_seconds} seconds"))

    @property
    def frames_echoed(self) -> int:
        """Frames sent back to the person (both kinds)."""
        return sum(c.frames_delivered for p in self.producers.values() for c in p.consumers)

    async def answer(self, offer_sdp: str) -> str:
        if self.closed:
            raise CheckRefusedError("check-ended", "this check has ended")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def add_candidate(self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None) -> None:
        if not self.closed:
            await add_ice_candidate(self.pc, candidate, sdp_mid, sdp_mline_index)

    async def end(self, reason: EndReason, message: str) -> None:
        """Idempotent: the first reason wins; later callers wait for the same ending."""
        if self._ending is None:
            self._ending = asyncio.get_running_loop().create_task(self._end(reason, message))
        await asyncio.shield(self._ending)

    async def _end(self, reason: EndReason, message: str) -> None:
        try:
            self.closed = True
            self.end_reason = reason
            self._timer.cancel()
            if reason != "left":  # whoever left knows it; the others are told why (nothing follows `ended`)
                with contextlib.suppress(Exception):
                    await self.send({"type": "ended", "reason": reason, "message": message,
                                     "frames_echoed": self.frames_echoed})
            for track in self.outgoing.values():
                track.stop()
            await self.router.close()
            await self.pc.close()
        finally:
            if self._on_closed is not None:
                self._on_closed(self)


class DeviceChecks:
    """The open checks of this media server, by account, and the tokens already used."""

    def __init__(self, ice_servers: Sequence[dict[str, Any]] = ()) -> None:
        self.ice_servers = ice_servers
        self.sessions: dict[str, DeviceCheckSession] = {}
        self._used: dict[str, float] = {}  # token id -> its expiry (epoch seconds)
        self.opened_total = 0

    def is_open(self, account: str) -> bool:
        return account in self.sessions

    def open(self, claims: DeviceCheckClaims, send: Send, now: datetime) -> DeviceCheckSession:
        """A new check for this token's account; refused when the token was used or the account
        already has a check open (another tab, another device)."""
        ts = now.timestamp()
        for token_id in [k for k, expiry in self._used.items() if expiry <= ts]:
            del self._used[token_id]
        if claims.token_id in self._used:
            raise CheckRefusedError("token-used", "this device-check token was already used; ask for a new one")
        if claims.account in self.sessions:
            raise CheckRefusedError("check-open", "a device check is already running for this account (in another "
                                                  "tab or on another device); finish it first")
        self._used[claims.token_id] = claims.expires_at.timestamp()
        session = DeviceCheckSession(claims, send, ice_servers=self.ice_servers, on_closed=self._closed)
        self.sessions[claims.account] = session
        self.opened_total += 1
        return session

    def _closed(self, session: DeviceCheckSession) -> None:
        if self.sessions.get(session.account) is session:
            del self.sessions[session.account]

    async def close(self) -> None:
        """Shutting down: every open check ends, its person told why."""
        await asyncio.gather(*(s.end("failed", "the media server shut down") for s in list(self.sessions.values())),
                             return_exceptions=True)
