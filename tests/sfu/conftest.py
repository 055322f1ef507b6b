"""Fixtures shared by the C module's contract tests."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from sfu.aiortc_adapter import native_rtp


@pytest.fixture
def native() -> Any:
    """sfu._rtp_native; under CI a missing build is a failure, not a skip."""
    module = native_rtp()
    if module is None and os.environ.get("CI") == "true":
        pytest.fail("sfu._rtp_native is not built (pip install -e . builds it)")
    if module is None:
        pytest.skip("sfu._rtp_native is not built")
    return module


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(sending socket, bound receiving socket with a 2 s timeout) on IPv4 loopback."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(2)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield sender, receiver
    sender.close()
    receiver.close()
