"""SRTP calls without pylibsrtp's per-call wrapper (sfu/aiortc_adapter/srtp.py)."""

from __future__ import annotations

import pytest


def test_direct_srtp_calls_equal_pylibsrtps_own() -> None:
    """The SFU calls libsrtp through pylibsrtp's binding without its per-call wrapper: the same
    ciphertext as Session.protect, decrypted back, a replay and a forgery refused alike."""
    import os

    import pylibsrtp

    from sfu.aiortc_adapter import SrtpCalls

    key = os.urandom(28)

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction,
                                                         srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM))

    theirs, ours = session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), SrtpCalls(session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    receiver = SrtpCalls(session(pylibsrtp.Policy.SSRC_ANY_INBOUND))
    for seq in range(1, 4):
        plain = bytes([0x80, 96, 0, seq, 0, 0, 0, 1, 0, 0, 0, 7]) + os.urandom(1200)
        protected = ours.protect(plain)
        assert protected == theirs.protect(plain)
        assert receiver.unprotect(protected) == plain
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected)  # a replay
    with pytest.raises(pylibsrtp.Error):
        receiver.unprotect(protected[:-1] + bytes([protected[-1] ^ 1]))  # a forged tag
    with pytest.raises(ValueError):
        ours.protect(bytes(4000))
