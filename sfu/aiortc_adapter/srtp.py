"""SRTP for one session through libsrtp directly, on a buffer of our own."""

from __future__ import annotations

from typing import Any

import pylibsrtp

from sfu.aiortc_adapter.contract import srtp_context, srtp_ffi, srtp_lib


class SrtpCalls:
    """`pylibsrtp.Session.protect` / `unprotect` for one session, minus what they cost per call
    besides the cipher (a fresh `int *`, type and size checks, two more Python frames): the same
    libsrtp calls, on a buffer of our own. The session stays the owner of the libsrtp context."""

    _BUFFER = 2048  # a datagram (<= 1500) and its SRTP trailer

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session  # keeps the libsrtp context alive
        self._context = srtp_context(session)
        self.address = int(srtp_ffi.cast("uintptr_t", self._context))  # for sfu._rtp_native
        self._cdata = srtp_ffi.new("char[]", self._BUFFER)
        self._buffer = srtp_ffi.buffer(self._cdata)
        self._length = srtp_ffi.new("int *")

    def protect(self, packet: bytes) -> bytes:
        return self._call(srtp_lib.srtp_protect, packet)

    def unprotect(self, packet: bytes) -> bytes:
        return self._call(srtp_lib.srtp_unprotect, packet)

    def _call(self, function: Any, packet: bytes) -> bytes:
        size = len(packet)
        if size > self._BUFFER - pylibsrtp.SRTP_MAX_TRAILER_LEN:
            raise ValueError("packet is too long")
        self._buffer[0:size] = packet
        self._length[0] = size
        status = function(self._context, self._cdata, self._length)
        if status:
            errors = pylibsrtp.ERRORS
            raise pylibsrtp.Error(errors[status] if status < len(errors) else f"libsrtp error {status}")
        return self._buffer[0:self._length[0]]
