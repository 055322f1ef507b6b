"""Per-visit routers: producers (published tracks) and consumers (peers, recorders, monitors).

Pure asyncio, no aiortc: the aiortc adapter (`sfu.aiortc_adapter`) feeds producers with encoded
frames and drains consumers into senders.
"""

from sfu.router.consumer import Consumer, ConsumerClosedError
from sfu.router.frames import EncodedFrame, vp8_is_keyframe
from sfu.router.keyframes import KeyFrameRequestManager
from sfu.router.producer import Producer
from sfu.router.router import PrivilegeViolationError, Router

__all__ = ["Consumer", "ConsumerClosedError", "EncodedFrame", "KeyFrameRequestManager", "PrivilegeViolationError",
           "Producer", "Router", "vp8_is_keyframe"]
