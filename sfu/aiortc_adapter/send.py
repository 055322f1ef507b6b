"""Sending: a consumer's encoded frames as RTP, from the very call that delivered them.

Three objects take part, each named for what it does:
- aiortc's `RTCRtpSender` (`rtc_sender`) negotiates the codec, SSRC, extension ids and keys,
  sends RTCP sender reports (counting what the writer sent) and hands NACKs in;
- the stream writer (`writer`: the C `sfu._rtp_native.Sender`, or its Python twin
  `PythonStreamWriter`) owns the RTP stream's state and turns a frame into SRTP datagrams (and,
  in C, sends them); a producer's fast path sends to it directly, past Python;
- `FrameSender` (here) joins them: it configures the writer from the negotiated parameters,
  gives it the nominated ICE pair's socket and the SRTP session as they change, sends what the
  writer hands back, and answers NACKs from the writer's history. No queue, no task switch.
"""

from __future__ import annotations

import random
from typing import Any

from aiortc import RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters

from sfu.aiortc_adapter import contract, native
from sfu.aiortc_adapter.contract import AdapterContractError
from sfu.aiortc_adapter.srtp import SrtpCalls
from sfu.router.frames import EncodedFrame, Kind

_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
# (nominated pair, its socket transport, remote address, (socket fd, sockaddr) for the C writer)
Path = tuple[Any, Any, Any, tuple[int, bytes] | None]


class FrameSender:
    """Sends a consumer's encoded frames over `rtc_sender`'s negotiated stream, through its stream
    writer (see the module docstring). `output` is the writer when a producer's fast path may
    send to it past Python (the C implementation), else None."""

    def __init__(self, rtc_sender: RTCRtpSender, kind: Kind) -> None:
        implementation = native.implementation
        self.rtc_sender = rtc_sender
        self.kind = kind
        self.retransmissions = 0
        self.writer: Any = implementation.stream_writer(kind == "video", random.getrandbits(16),
                                                        random.getrandbits(32), random.getrandbits(15))
        self.output: Any = self.writer if implementation.routable else None
        self._socket_target = implementation.socket_target
        self._stream: tuple[int, bytes, bytes, bool] | None = None  # payload type, extension head/tail, abs
        self._dtls: RTCDtlsTransport | None = None  # known once aiortc starts the sender (ICE and DTLS up)
        self._nominated_pairs: dict[int, Any] = {}  # the ICE connection's nominated pairs
        self._srtp_calls: SrtpCalls | None = None
        self._path: Path | None = None
        self._writer_path: tuple[Any, Any] | None = None  # (pair, SRTP session) the writer was given
        contract.count_sender_reports_from(rtc_sender, self.writer)
        original_send = rtc_sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self._configure(parameters)
            await original_send(parameters)

        rtc_sender.send = send  # type: ignore[method-assign]
        contract.answer_nacks_with(rtc_sender, self.retransmit)

    @property
    def packets_sent(self) -> int:
        return int(self.writer.packets_sent)

    @property
    def send_failures(self) -> int:
        """Datagrams the socket refused (send buffer full): lost, as on a congested router."""
        return int(self.writer.send_failures)

    def _configure(self, parameters: RTCRtpSendParameters) -> None:
        """The negotiated payload type and header extensions (RFC 8285 one-byte form: mid, and
        abs-send-time, whose 3 time bytes the writer puts between head and tail per frame)."""
        ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
        mid = (parameters.muxId or "").encode()
        mid_element = bytes([ids[_MID] << 4 | (len(mid) - 1)]) + mid if _MID in ids and 0 < len(mid) <= 16 else b""
        has_abs_send_time = _ABS_SEND_TIME in ids
        head = tail = b""
        size = (4 if has_abs_send_time else 0) + len(mid_element)  # abs-send-time: id byte + 3 bytes
        if size:
            padding = -size % 4
            block_header = b"\xbe\xde" + ((size + padding) // 4).to_bytes(2, "big")
            tail = mid_element + b"\0" * padding
            if has_abs_send_time:
                head = block_header + bytes([ids[_ABS_SEND_TIME] << 4 | 2])
            else:
                tail = block_header + tail
        payload_type = parameters.codecs[0].payloadType
        if payload_type is None:
            raise AdapterContractError("the negotiated codec has no payload type")
        self._stream = (payload_type, head, tail, has_abs_send_time)
        self._dtls = self.rtc_sender.transport  # final: bundling has picked the transport by now
        self._nominated_pairs = contract.nominated_pairs(contract.ice_connection(self._dtls.transport))
        self.reconfigure()

    def reconfigure(self) -> None:
        """Give the writer the negotiated stream (again, after benchmarks change the SSRC)."""
        if self._stream is not None:
            payload_type, head, tail, has_abs_send_time = self._stream
            self.writer.configure(payload_type, contract.sender_ssrc(self.rtc_sender), head, tail, has_abs_send_time)

    def _path_now(self) -> tuple[RTCDtlsTransport, Path] | None:
        """The DTLS transport and the path media goes out on, or None while the connection cannot
        carry media. Looked up per frame: ICE may switch the nominated pair."""
        dtls = self._dtls
        if dtls is None or contract.dtls_state(dtls) is not DtlsState.CONNECTED:
            return None
        pair = self._nominated_pairs.get(1)
        if pair is None:
            return None
        path = self._path
        if path is None or path[0] is not pair:
            transport = pair.protocol.transport
            path = self._path = (pair, transport, pair.remote_addr, self._socket_target(transport, pair.remote_addr))
        return dtls, path

    def send_frame(self, frame: EncodedFrame) -> bool:
        """Send one frame now. False if the connection cannot carry media yet (or any more)."""
        now = self._path_now()
        if now is None:
            return False
        dtls, (pair, transport, address, target) = now
        srtp = self._srtp_calls
        session = contract.tx_srtp(dtls)
        if srtp is None or srtp.session is not session:
            srtp = self._srtp_calls = SrtpCalls(session)
        writer = self.writer
        if self._writer_path != (pair, session):  # told of a new path; in C it checks it itself past Python
            self._writer_path = (pair, session)
            fd, sockaddr = target if target is not None else (-1, b"")
            writer.set_path(srtp.address, session, fd, sockaddr, dtls, DtlsState.CONNECTED, self._nominated_pairs, pair)
        datagrams = writer.send(frame.data, frame.timestamp, frame.clock_rate, frame.received_at)
        if datagrams is not None:  # no socket of its own (Python, or a test's transport): send them here
            for datagram in datagrams:
                transport.sendto(datagram, address)
        return True

    def source_changed(self) -> None:
        """Another producer feeds this sender now (a party rejoined): its timestamps start from
        zero, but the stream the receiver sees must go on, as if the party had never left."""
        self.writer.source_changed()

    async def retransmit(self, sequence_number: int) -> None:
        """A receiver's NACK: the packet again, as it was sent (same SRTP index, so no re-protect)."""
        data = self.writer.sent_packet(sequence_number)
        if data is None:
            return
        now = self._path_now()
        if now is not None:
            _dtls, (_pair, transport, address, _target) = now
            transport.sendto(data, address)
            self.retransmissions += 1
