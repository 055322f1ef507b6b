"""Every private aiortc, aioice and pylibsrtp name the SFU relies on, in one table, checked once.

aiortc's public API decodes and encodes every frame and moves packets through queues; forwarding
encoded media from the socket callback needs its internals (see the package docstring). They
are private, so an upgrade may rename them: `check_contract()` runs when the adapter is
imported and fails at once with `AdapterContractError` naming the missing names and the
installed versions, instead of at the first packet of a visit. No other module of the project
spells a private name: they call the accessors below (tests and benchmarks too).

The C extension (`sfu._rtp_native`) reads some of these names as well; they are listed with
`used_from="C"` so the table is the whole contract.
"""

from __future__ import annotations

import operator
import types
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal

import aioice.ice
import aioice.turn
import aiortc.clock
import aiortc.rtcicetransport
import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rate import OveruseEstimator, RateCounter, RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtp import HeaderExtensionsMap
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

__all__ = ["PRIVATE_NAMES", "AdapterContractError", "PrivateName", "check_contract", "srtp_ffi", "srtp_lib"]

Kind = Literal["attribute", "method", "module member"]


class AdapterContractError(RuntimeError):
    """aiortc no longer has the internals this adapter relies on (see the contract table)."""


@dataclass(frozen=True)
class PrivateName:
    """One name the adapter relies on: where it lives, what it is, who reads it and why.

    `attribute` is an instance attribute (looked for among the names the owner's methods
    assign, so no instance is needed); `method` and `module member` must exist on the owner."""

    owner: type | types.ModuleType
    name: str
    kind: Kind
    why: str
    used_from: Literal["Python", "C", "Python and C"] = "Python"

    @property
    def qualified(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


def _mangled(cls: type, name: str) -> str:
    """`__name` as Python stores it when a method of `cls` spells it."""
    return f"_{cls.__name__.lstrip('_')}__{name}"


_R, _S = RTCRtpReceiver, RTCRtpSender

PRIVATE_NAMES: tuple[PrivateName, ...] = (
    # the receiver's tables, read by the frame tap (Python `_FrameTap` and the C `Tap`)
    PrivateName(_R, _mangled(_R, "codecs"), "attribute", "payload type -> negotiated codec"),
    PrivateName(_R, _mangled(_R, "remote_bitrate_estimator"), "attribute", "the REMB estimator (None: no REMB)"),
    PrivateName(_R, _mangled(_R, "active_ssrc"), "attribute", "getSynchronizationSources() reads it"),
    PrivateName(_R, _mangled(_R, "remote_streams"), "attribute",
                "per-SSRC statistics its RTCP receiver reports read; the C Tap writes into it", "Python and C"),
    PrivateName(_R, _mangled(_R, "rtx_ssrc"), "attribute", "RTX SSRC -> original SSRC"),
    PrivateName(_R, _mangled(_R, "nack_generator"), "attribute", "None when NACK was not negotiated"),
    PrivateName(_R, _mangled(_R, "rtcp_ssrc"), "attribute", "the SSRC our REMBs are sent from"),
    PrivateName(_R, _mangled(_R, "decoder_queue"), "attribute", "ended at start: frames are never decoded"),
    PrivateName(_R, "_enabled", "attribute", "a disabled receiver drops its packets", "Python and C"),
    PrivateName(_R, "_send_rtcp", "method", "REMBs go out through it (clamped by clamp_publisher_remb)"),
    PrivateName(_R, "_send_rtcp_nack", "method", "NACKs for missing packets"),
    PrivateName(_R, "_send_rtcp_pli", "method", "keyframe requests to the publisher"),
    PrivateName(_R, "_handle_rtp_packet", "method", "RTP of receivers that are not tapped"),
    # the sender: counters of its RTCP sender reports, keyframe requests, REMBs, NACKs
    PrivateName(_S, _mangled(_S, "packet_count"), "attribute", "sender reports: packets sent"),
    PrivateName(_S, _mangled(_S, "octet_count"), "attribute", "sender reports: octets sent"),
    PrivateName(_S, _mangled(_S, "rtp_timestamp"), "attribute", "sender reports: last RTP timestamp"),
    PrivateName(_S, _mangled(_S, "ntp_timestamp"), "attribute", "sender reports: last NTP time"),
    PrivateName(_S, _mangled(_S, "force_keyframe"), "attribute", "what _send_keyframe sets (encode path only)"),
    PrivateName(_S, "_ssrc", "attribute", "the negotiated SSRC we send from"),
    PrivateName(_S, "_send_keyframe", "method", "a subscriber's PLI: redirected to the producer"),
    PrivateName(_S, "_handle_rtcp_packet", "method", "a subscriber's REMB: relayed to the producer"),
    PrivateName(_S, "_retransmit", "method", "a subscriber's NACK: answered from our history"),
    # the transports: SRTP sessions, state, RTP routing, the ICE connection's sockets
    PrivateName(RTCDtlsTransport, "_rx_srtp", "attribute", "the receiving SRTP session"),
    PrivateName(RTCDtlsTransport, "_tx_srtp", "attribute", "the sending SRTP session (C Sender checks it)",
                "Python and C"),
    PrivateName(RTCDtlsTransport, "_state", "attribute", "media only while CONNECTED (C Sender checks it)",
                "Python and C"),
    PrivateName(RTCDtlsTransport, "_rtp_header_extensions_map", "attribute", "negotiated extension ids"),
    PrivateName(RTCDtlsTransport, "_rtp_router", "attribute", "picks the receiver of an RTP packet"),
    PrivateName(HeaderExtensionsMap, _mangled(HeaderExtensionsMap, "ids"), "attribute", "the abs-send-time id"),
    PrivateName(RTCIceTransport, "_connection", "attribute", "aioice's Connection"),
    PrivateName(aioice.ice.Connection, "_nominated", "attribute", "component -> nominated pair (C Sender reads it)",
                "Python and C"),
    PrivateName(aioice.ice.Connection, "_protocols", "attribute", "one protocol per gathered socket"),
    PrivateName(aioice.turn.TurnTransport, _mangled(aioice.turn.TurnTransport, "inner_protocol"), "attribute",
                "the relay's TCP/TLS/UDP protocol (test client diagnostics)"),
    PrivateName(pylibsrtp.Session, "_srtp", "attribute", "the libsrtp context, called without the wrapper"),
    PrivateName(pylibsrtp, "_binding", "module member", "libsrtp's cffi ffi and lib"),
    # the REMB estimator, made cheaper (estimator.py)
    PrivateName(RemoteBitrateEstimator, "estimator", "attribute", "its OveruseEstimator"),
    PrivateName(RemoteBitrateEstimator, "incoming_bitrate", "attribute", "its RateCounter, replaced"),
    PrivateName(OveruseEstimator, "ts_delta_hist", "attribute", "the minimum frame period's history"),
    PrivateName(OveruseEstimator, "update_min_frame_period", "method", "replaced per instance"),
    *(PrivateName(RateCounter, name, "attribute", "state taken over by the faster counter")
      for name in ("_buckets", "_total", "_origin_index", "_origin_ms", "_scale", "_window_size")),
    # process-wide patches (patches.py)
    PrivateName(aiortc.clock, "current_ms", "module member", "replaced by the fast clock"),
    PrivateName(aiortc.clock, "current_ntp_time", "module member", "replaced by the fast clock"),
    PrivateName(aioice.ice, "get_host_addresses", "module member", "replaced: only the configured addresses"),
    PrivateName(aioice.ice, "asyncio", "module member", "replaced: sockets bound inside the port range"),
    PrivateName(aiortc.rtcicetransport.RTCIceGatherer, "getLocalCandidates", "method",
                "replaced: the announced address in host candidates"),
)


def _assigned_names(cls: type) -> set[str]:
    """Every attribute name the methods of `cls` (and its bases, up to `object`) mention."""
    names: set[str] = set()

    def walk(code: types.CodeType) -> None:
        names.update(code.co_names)
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                walk(constant)

    for klass in cls.__mro__[:-1]:
        for member in vars(klass).values():
            function = getattr(member, "fget", member)  # properties: their getter
            code = getattr(function, "__code__", None)
            if isinstance(code, types.CodeType):
                walk(code)
    return names


def missing_names(names: Iterable[PrivateName]) -> list[PrivateName]:
    """The listed names the installed libraries do not have."""
    missing = []
    for entry in names:
        if entry.kind == "attribute" and isinstance(entry.owner, type):
            present = entry.name in vars(entry.owner) or entry.name in _assigned_names(entry.owner)
        else:
            present = hasattr(entry.owner, entry.name)
        if not present:
            missing.append(entry)
    return missing


def installed_versions() -> str:
    return ", ".join(f"{package} {version(package)}" for package in ("aiortc", "aioice", "pylibsrtp"))


def check_contract(names: Iterable[PrivateName] = PRIVATE_NAMES) -> None:
    """Raise AdapterContractError if any listed private name is gone (run at import)."""
    missing = missing_names(names)
    if missing:
        listed = "; ".join(f"{entry.qualified} ({entry.kind}, used from {entry.used_from}: {entry.why})"
                           for entry in missing)
        raise AdapterContractError(f"the installed {installed_versions()} lacks what sfu.aiortc_adapter relies on "
                                   f"(pyproject.toml pins aiortc 1.16): {listed}. Update "
                                   "sfu/aiortc_adapter/contract.py and the code that uses these names.")


def private(obj: object, cls: type, name: str) -> Any:
    """`obj`'s name-mangled attribute `__name` of class `cls` (listed in the table)."""
    attribute = _mangled(cls, name)
    if not hasattr(obj, attribute):
        raise AdapterContractError(f"{cls.__name__}.__{name} is gone: aiortc changed "
                                   f"({installed_versions()}), update sfu/aiortc_adapter/contract.py")
    return getattr(obj, attribute)


# ---------------------------------------------------------------- accessors: receiver


@dataclass(frozen=True)
class ReceiverTables:
    """An RTCRtpReceiver's private state the frame tap reads and fills in."""

    codecs: dict[int, Any]
    remote_bitrate_estimator: Any
    active_ssrc: dict[int, Any]
    remote_streams: dict[int, Any]
    rtx_ssrc: dict[int, int]
    nack_generator: Any


def receiver_tables(receiver: RTCRtpReceiver) -> ReceiverTables:
    return ReceiverTables(*(private(receiver, RTCRtpReceiver, name) for name in (
        "codecs", "remote_bitrate_estimator", "active_ssrc", "remote_streams", "rtx_ssrc", "nack_generator")))


def has_remote_bitrate_estimator(receiver: RTCRtpReceiver) -> bool:
    return private(receiver, RTCRtpReceiver, "remote_bitrate_estimator") is not None


def receiver_rtcp_ssrc(receiver: RTCRtpReceiver) -> int | None:
    ssrc: int | None = private(receiver, RTCRtpReceiver, "rtcp_ssrc")
    return ssrc


def decoder_queue(receiver: RTCRtpReceiver) -> Any:
    return private(receiver, RTCRtpReceiver, "decoder_queue")


receiver_enabled: Callable[[RTCRtpReceiver], bool] = operator.attrgetter("_enabled")  # per packet: a C getter


def send_rtcp(receiver: RTCRtpReceiver, packet: Any) -> Coroutine[Any, Any, None]:
    return receiver._send_rtcp(packet)


def send_rtcp_nack(receiver: RTCRtpReceiver, ssrc: int, lost: list[int]) -> Coroutine[Any, Any, None]:
    return receiver._send_rtcp_nack(ssrc, lost)


def send_rtcp_pli(receiver: RTCRtpReceiver, ssrc: int) -> Coroutine[Any, Any, None]:
    return receiver._send_rtcp_pli(ssrc)


def handle_rtp_packet(receiver: Any, packet: Any, arrival_ms: int) -> Coroutine[Any, Any, None]:
    coroutine: Coroutine[Any, Any, None] = receiver._handle_rtp_packet(packet, arrival_ms)
    return coroutine


def replace_send_rtcp(receiver: RTCRtpReceiver,
                      send: Callable[[Any], Coroutine[Any, Any, None]]) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """Put `send` in place of the receiver's RTCP output; returns the original."""
    original = receiver._send_rtcp
    receiver._send_rtcp = send  # type: ignore[method-assign,assignment]
    return original


# ---------------------------------------------------------------- accessors: sender


def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def set_sender_ssrc(sender: RTCRtpSender, ssrc: int) -> None:
    """Benchmarks only: send from another SSRC (SRTP refuses a sequence number twice)."""
    sender._ssrc = ssrc


def redirect_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """A receiver's PLI reaches `_send_keyframe`, which only sets the encoder's force-keyframe
    flag: call `request` instead."""
    private(sender, RTCRtpSender, "force_keyframe")
    sender._send_keyframe = request  # type: ignore[method-assign]


def wrap_rtcp_handler(sender: RTCRtpSender,
                      wrap: Callable[[Callable[[Any], Coroutine[Any, Any, None]]],
                                     Callable[[Any], Coroutine[Any, Any, None]]]) -> None:
    """Every RTCP packet the sender receives goes through `wrap(original handler)`."""
    sender._handle_rtcp_packet = wrap(sender._handle_rtcp_packet)  # type: ignore[method-assign,assignment]


def answer_nacks_with(sender: RTCRtpSender, retransmit: Callable[[int], Coroutine[Any, Any, None]]) -> None:
    sender._retransmit = retransmit  # type: ignore[method-assign,assignment]


def _counted_by(attribute: str) -> Any:
    """One of the counters aiortc's sender keeps for its RTCP sender reports, read from the RTP
    stream writer instead. Its setter only serves aiortc's own encode path, which never runs here."""
    return property(lambda self: int(getattr(self._openvisit_writer, attribute)), lambda self, value: None)


class _WriterCountedSender(RTCRtpSender):
    """An RTCRtpSender whose RTCP sender-report counters (read by its RTCP task and getStats) are
    those of the stream writer that sends its packets, frames sent past Python included."""

    _openvisit_writer: Any
    _RTCRtpSender__packet_count = _counted_by("packets_sent")
    _RTCRtpSender__octet_count = _counted_by("octets_sent")
    _RTCRtpSender__rtp_timestamp = _counted_by("last_timestamp")
    _RTCRtpSender__ntp_timestamp = _counted_by("last_ntp")


def count_sender_reports_from(sender: RTCRtpSender, writer: Any) -> None:
    """The sender's RTCP sender reports count what `writer` sent (it has the C Sender's counters)."""
    for name in ("packet_count", "octet_count", "rtp_timestamp", "ntp_timestamp"):
        private(sender, RTCRtpSender, name)
    sender.__class__ = _WriterCountedSender
    sender._openvisit_writer = writer  # type: ignore[attr-defined]


# ---------------------------------------------------------------- accessors: transports


rx_srtp: Callable[[RTCDtlsTransport], pylibsrtp.Session | None] = operator.attrgetter("_rx_srtp")  # per packet
tx_srtp: Callable[[RTCDtlsTransport], pylibsrtp.Session] = operator.attrgetter("_tx_srtp")
dtls_state: Callable[[RTCDtlsTransport], DtlsState] = operator.attrgetter("_state")


def header_extension_ids(dtls: RTCDtlsTransport) -> Any:
    """The transport's negotiated extension ids (`.abs_send_time`), filled in as transceivers start."""
    return private(dtls._rtp_header_extensions_map, HeaderExtensionsMap, "ids")


def rtp_router(dtls: RTCDtlsTransport) -> Any:
    return dtls._rtp_router


def ice_connection(ice: RTCIceTransport) -> aioice.ice.Connection:
    return ice._connection


def nominated_pairs(connection: aioice.ice.Connection) -> dict[int, Any]:
    """component -> nominated pair: the same dict for the connection's life (aioice clears it)."""
    return connection._nominated


def ice_protocols(connection: aioice.ice.Connection) -> list[Any]:
    """aioice's StunProtocol of each gathered socket."""
    protocols: list[Any] = connection._protocols
    return protocols


def turn_inner_protocol(transport: Any) -> Any:
    """The TCP/TLS/UDP protocol under a TURN relay's transport, or None for a direct socket."""
    return getattr(transport, _mangled(aioice.turn.TurnTransport, "inner_protocol"), None)


def srtp_context(session: pylibsrtp.Session) -> Any:
    """The libsrtp `srtp_t` of a pylibsrtp session (the session stays its owner)."""
    handle = getattr(session, "_srtp", None)
    if handle is None:
        raise AdapterContractError(f"pylibsrtp.Session._srtp is gone ({installed_versions()}): "
                                   "update sfu/aiortc_adapter/contract.py")
    return handle[0]


# ---------------------------------------------------------------- accessors: the REMB estimator's rate counter


@dataclass(frozen=True)
class RateCounterState:
    window_size: int
    scale: int
    counts: list[int]
    values: list[int]
    total_count: int
    total_value: int
    origin_index: int
    origin_ms: int | None


def rate_counter_state(counter: RateCounter) -> RateCounterState:
    buckets = counter._buckets
    return RateCounterState(counter._window_size, counter._scale, [bucket.count for bucket in buckets],
                            [bucket.value for bucket in buckets], counter._total.count, counter._total.value,
                            counter._origin_index, counter._origin_ms)


def estimator_parts(estimator: RemoteBitrateEstimator) -> tuple[OveruseEstimator, RateCounter]:
    inner = getattr(estimator, "estimator", None)
    counter = getattr(estimator, "incoming_bitrate", None)
    if not isinstance(inner, OveruseEstimator) or not isinstance(getattr(inner, "ts_delta_hist", None), list) \
            or not isinstance(counter, RateCounter) or not hasattr(counter, "_buckets"):
        raise AdapterContractError(f"aiortc's RemoteBitrateEstimator changed ({installed_versions()}): "
                                   "update sfu/aiortc_adapter/contract.py")
    return inner, counter

