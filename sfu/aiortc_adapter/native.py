"""C or Python, chosen once: the per-packet implementation the whole adapter uses.

`sfu._rtp_native` (built by `pip install`) does the steady-state packet work in C; every piece of
it has a Python twin, the reference the C is tested against and the fallback if it was not
built (as aiohttp's `_http_parser` and `http_parser`). The choice is made here, at import, into
`implementation`; the adapter's modules read what they need from it when they set a receiver or
a sender up, never per packet. Tests switch to `PYTHON` by monkeypatching `implementation`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from aiortc.rtcrtpreceiver import StreamStatistics

from sfu.aiortc_adapter.contract import dtls_state, receiver_enabled, srtp_ffi, srtp_lib, tx_srtp
from sfu.aiortc_adapter.stream_writer import PythonStreamWriter
from sfu.frame_assembler import FrameAssembler

T = TypeVar("T")


@dataclass(frozen=True)
class Implementation:
    """The twins of one implementation. `module` is `sfu._rtp_native` for C (its `Tap`, `Demux`,
    `unprotect_rtp`, `sockaddr` have no Python twin of the same shape: `pick` chooses between
    the C and Python variants of what uses them), None for Python."""

    name: Literal["C", "Python"]
    module: Any
    stream_statistics: Callable[[int], Any]  # clock rate -> aiortc's StreamStatistics twin
    nack_generator: Callable[[Any], Any]  # the receiver's own (None: no NACK) -> the one to use
    frame_assembler: Callable[[], Any]
    stream_writer: Callable[[bool, int, int, int], Any]  # (video, sequence, origin, picture id): a `Sender`
    socket_target: Callable[[Any, Any], tuple[int, bytes] | None]  # (transport, address) -> (fd, sockaddr)

    def pick(self, c: T, python: T) -> T:
        """The variant of a mechanism for this implementation."""
        return c if self.name == "C" else python

    @property
    def routable(self) -> bool:
        """Whether frames can go from a tap to the stream writers without entering Python."""
        return self.name == "C"


def _no_socket_target(transport: Any, address: Any) -> None:
    return None


PYTHON = Implementation("Python", None, StreamStatistics, lambda own: own, FrameAssembler, PythonStreamWriter,
                        _no_socket_target)


def _load_c() -> Implementation | None:
    try:
        from sfu import _rtp_native  # type: ignore[attr-defined]
    except ImportError:
        logging.getLogger(__name__).warning("sfu._rtp_native is not built: forwarding in Python (slower)")
        return None

    def address(function: str) -> int:
        return int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, function)))

    _rtp_native.set_srtp(address("srtp_protect"), address("srtp_unprotect"))
    _rtp_native.bind_accessors(dtls_state, tx_srtp, receiver_enabled)  # the C reads aiortc's state through these

    def socket_target(transport: Any, address: Any) -> tuple[int, bytes] | None:
        """(socket fd, sockaddr) for the C Sender to send on, if `transport` is a real socket."""
        sock = transport.get_extra_info("socket") if hasattr(transport, "get_extra_info") else None
        if sock is None:
            return None
        try:
            return sock.fileno(), _rtp_native.sockaddr(address[0], address[1])
        except (ValueError, OSError, IndexError, TypeError):
            return None

    return Implementation("C", _rtp_native, _rtp_native.StreamStatistics,
                          lambda own: _rtp_native.NackGenerator() if own is not None else None,
                          _rtp_native.FrameAssembler, _rtp_native.Sender, socket_target)


C = _load_c()
implementation: Implementation = C if C is not None else PYTHON


def native_rtp() -> Any:
    """`sfu._rtp_native` if it is the implementation in use, else None."""
    return implementation.module
