"""The one place the SFU reaches into aiortc and aioice internals.

aiortc's public API decodes every received frame and encodes every sent one, and moves every
packet through queues and tasks. An SFU must not: it takes each frame encoded and sends it
encoded, and it does both in the socket callback that received the packet. Everything here
depends on private details of aiortc 1.16 and aioice 0.13 (pinned in pyproject.toml), listed in
`contract.py` and checked when this package is imported.

One module per mechanism:
- `contract`: every private name relied on (from Python and from C), its check, its accessors.
- `native`: C (`sfu._rtp_native`) or the Python reference, chosen once at import.
- `srtp`: libsrtp calls without pylibsrtp's per-call wrapper. `rtp_parsing`: the receive path's
  RTP parser (fixed header and abs-send-time).
- `socket_takeover`: SRTP packets decrypted, parsed and routed to the receiver's tap in the
  socket's own callback (in C: a `Demux` ingress that routes (SSRC, payload type) to C Taps).
- `receive`: the frame tap (`tap_receiver`): REMB estimate, receiver statistics, NACKs, RTX,
  whole encoded frames to a callback, never decoded; `send_pli`. `estimator`: aiortc's REMB
  estimator made cheaper, every estimate the same.
- `stream_writer`: an outgoing RTP stream (packetise, RTP header and extensions, SRTP,
  retransmission history) in Python, the twin of the C `Sender`. `send`: `FrameSender` joins
  aiortc's `RTCRtpSender` (negotiation, RTCP) and the writer, from the call that delivered the
  frame.
- `track_wiring`: `ForwardingTrack`, `forward_through`, a subscriber's PLI and REMB routed to
  the producer, `clamp_publisher_remb`.
- `patches`: process-wide patches (fast clock, host candidates, announced address, port
  range). `configuration`: `rtc_configuration`.

In C the whole steady-state path runs without Python: the socket's callback routes to a C Tap,
which sends each complete frame straight to the consumers' C writers while the producer allows
it (`sfu.router.fast_path`). The Python twins are the reference the C is tested against
(tests/sfu/native/) and the fallback if
it was not built.
"""

from sfu.aiortc_adapter.contract import AdapterContractError, check_contract

check_contract()

from sfu.aiortc_adapter.configuration import rtc_configuration  # noqa: E402
from sfu.aiortc_adapter.estimator import speed_up_estimator  # noqa: E402
from sfu.aiortc_adapter.native import native_rtp  # noqa: E402
from sfu.aiortc_adapter.patches import (  # noqa: E402
    announce_host_address,
    install_fast_clock,
    restrict_host_candidates,
    restrict_udp_ports,
)
from sfu.aiortc_adapter.receive import PythonFrameTap, _TimestampUnwrapper, c_frame_tap, send_pli, tap_receiver  # noqa: E402
from sfu.aiortc_adapter.rtp_parsing import ReceivedRtp, parse_rtp  # noqa: E402
from sfu.aiortc_adapter.send import FrameSender  # noqa: E402
from sfu.aiortc_adapter.srtp import SrtpCalls  # noqa: E402
from sfu.aiortc_adapter.stream_writer import PythonStreamWriter, vp8_payloads  # noqa: E402
from sfu.aiortc_adapter.track_wiring import ForwardingTrack, clamp_publisher_remb, forward_through  # noqa: E402

# the names the reference tests of the C extension use
_ReceivedRtp = ReceivedRtp
_FrameTap = PythonFrameTap
_native_tap = c_frame_tap

__all__ = [
    "AdapterContractError",
    "ForwardingTrack",
    "FrameSender",
    "PythonFrameTap",
    "PythonStreamWriter",
    "ReceivedRtp",
    "SrtpCalls",
    "_FrameTap",
    "_ReceivedRtp",
    "_TimestampUnwrapper",
    "_native_tap",
    "announce_host_address",
    "c_frame_tap",
    "clamp_publisher_remb",
    "forward_through",
    "install_fast_clock",
    "native_rtp",
    "parse_rtp",
    "restrict_host_candidates",
    "restrict_udp_ports",
    "rtc_configuration",
    "send_pli",
    "speed_up_estimator",
    "tap_receiver",
    "vp8_payloads",
]
