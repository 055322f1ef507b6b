"""What the C extension's differential tests share: SRTP sessions on one key (C and pylibsrtp
encrypt and decrypt for each other) and a stand-in for aiortc's RTCRtpReceiver, the object both
taps (C and Python) read and call back."""

from __future__ import annotations

import os
from typing import Any

import pylibsrtp
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator

from sfu.aiortc_adapter import SrtpCalls

VP8, RTX, OPUS = 96, 97, 111
VIDEO_SSRC, RTX_SSRC, AUDIO_SSRC = 0x1111, 0x2222, 0x3333
KEY = os.urandom(28)
PROFILE = pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM


def srtp_session(direction: int) -> SrtpCalls:
    return SrtpCalls(pylibsrtp.Session(policy=pylibsrtp.Policy(key=KEY, ssrc_type=direction, srtp_profile=PROFILE)))


def outbound_srtp() -> SrtpCalls:
    return srtp_session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)


def inbound_srtp() -> SrtpCalls:
    return srtp_session(pylibsrtp.Policy.SSRC_ANY_INBOUND)


class FakeReceiver:
    """What both taps read of an RTCRtpReceiver (its private tables) and call on it (RTCP)."""

    def __init__(self, kind: str) -> None:
        self._enabled = True
        self.sent: list[tuple[Any, ...]] = []
        codecs = [RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=VP8),
                  RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90_000, payloadType=RTX,
                                        parameters={"apt": VP8})] if kind == "video" else \
            [RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48_000, channels=2, payloadType=OPUS)]
        self._RTCRtpReceiver__codecs = {c.payloadType: c for c in codecs}
        self._RTCRtpReceiver__remote_bitrate_estimator = RemoteBitrateEstimator() if kind == "video" else None
        self._RTCRtpReceiver__active_ssrc: dict[int, Any] = {}
        self._RTCRtpReceiver__remote_streams: dict[int, Any] = {}
        self._RTCRtpReceiver__rtx_ssrc = {RTX_SSRC: VIDEO_SSRC} if kind == "video" else {}
        self._RTCRtpReceiver__nack_generator = NackGenerator() if kind == "video" else None
        self._RTCRtpReceiver__rtcp_ssrc = 0x9999

    async def _send_rtcp_nack(self, media_ssrc: int, lost: list[int]) -> None:
        self.sent.append(("nack", media_ssrc, lost))

    async def _send_rtcp_pli(self, media_ssrc: int) -> None:
        self.sent.append(("pli", media_ssrc))

    async def _send_rtcp(self, packet: Any) -> None:
        self.sent.append(("rtcp", bytes(packet)))
