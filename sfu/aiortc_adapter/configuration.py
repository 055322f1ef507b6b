"""The SFU's RTCConfiguration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer


def rtc_configuration(ice_servers: Sequence[dict[str, Any]] = ()) -> RTCConfiguration:
    """Only the configured ICE servers (aiortc would add a public STUN server otherwise)."""
    return RTCConfiguration(iceServers=[RTCIceServer(**server) for server in ice_servers])
