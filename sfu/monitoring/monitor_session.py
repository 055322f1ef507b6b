"""MonitorSession: an officer watching and listening to a live social visit (issue: monitoring).

Hidden and receive-only: one peer connection whose four send-only transceivers carry the
visitor's audio and video and the resident's audio and video, in that order (the officer's
offer has four recv-only m-lines: audio, video, audio, video). The participants are never told;
the officer sends nothing. Each transceiver forwards a `monitor` consumer of the party's
producer, which the router refuses outright on a privileged visit (P1).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy

from sfu.aiortc_adapter import ForwardingTrack, rtc_configuration
from sfu.forwarding_transceiver import add_forwarding_transceiver
from sfu.router import Producer, Router
from sfu.router.frames import Kind

Side = Literal["visitor", "resident"]
Send = Callable[[dict[str, Any]], Awaitable[None]]
SLOTS: tuple[tuple[Side, Kind], ...] = (("visitor", "audio"), ("visitor", "video"),
                                        ("resident", "audio"), ("resident", "video"))


class MonitorSession:
    def __init__(self, monitor_id: str, router: Router, send: Send,
                 ice_servers: Sequence[dict[str, Any]] = ()) -> None:
        router.admit(monitor_id, "monitor")  # P1: refused (and reported) before anything is set up
        self.monitor_id = monitor_id
        self.router = router
        self.send = send
        base = rtc_configuration(ice_servers)
        # MAX_BUNDLE: a second transceiver of a kind must share the one transport (aiortc 1414/1437).
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=base.iceServers,
                                                     bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.tracks: dict[tuple[Side, Kind], ForwardingTrack] = {
            (side, kind): add_forwarding_transceiver(self.pc, kind, "sendonly") for side, kind in SLOTS}
        self.closed = False

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    def watch(self, side: Side, producer: Producer) -> None:
        """Forward this party's track (again after a rejoin: the new producer replaces the old)."""
        if self.closed:
            return
        consumer = self.router.consume(producer, f"monitor-{self.monitor_id}-{side}-{producer.kind}", "monitor")
        self.tracks[(side, producer.kind)].attach(consumer)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for track in self.tracks.values():
            track.stop()
        await self.pc.close()
