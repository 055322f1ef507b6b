"""FrameAssembler: a video stream's RTP payloads in, whole encoded frames out, each as soon as it
is complete.

A frame is complete when its packets are all there, from the one after the previous frame up to
its marker packet (or up to a packet of the next frame, for a sender that omits the marker).
Reordered packets wait in a ring; a hole waits for its retransmission (NACK). When the hole
fills, every frame completed behind it is released at once, so one loss does not leave the
stream a frame late for good. A hole still open when `max_frames_waiting` later frames are
complete behind it (or when the ring is nearly full) is given up: what is held is dropped
(`frames_lost` counts the frames) and assembly restarts at the next frame. Deltas after such a
gap cannot be decoded, so the caller should ask for a keyframe.

Pure logic on sequence numbers, timestamps and bytes: no aiortc, tested directly. The SFU runs its
C twin (`sfu._rtp_native.FrameAssembler`, same API, same results); this class is the reference
(tests/sfu/native/test_frame_assembler.py runs every case on both and compares them on random
streams) and the fallback when the extension is not built.
"""

from __future__ import annotations

Frame = tuple[int, bytes]  # (RTP timestamp, the frame's bytes)
_Packet = tuple[int, bool, bytes]  # (RTP timestamp, marker, payload without its descriptor)


def vp8_frame_slice(payload: bytes) -> bytes:
    """The VP8 data of one RTP payload: the RFC 7741 descriptor stripped. Raises ValueError."""
    pos = 1
    if payload[0] & 0x80:  # X: extension octet follows
        extension = payload[1]
        pos = 2
        if extension & 0x80:  # I: picture id, 7 or 15 bits
            pos += 2 if payload[pos] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            pos += 1
        if extension & 0x30:  # T or K: one octet for both
            pos += 1
    if pos > len(payload):
        raise ValueError("VP8 payload descriptor truncated")
    return payload[pos:]


class FrameAssembler:
    CAPACITY = 512  # ring slots; a power of two dividing 2**16, so `seq & MASK` survives the wrap
    MASK = CAPACITY - 1
    MAX_SPAN = 448  # packets from the origin (a keyframe can be a hundred packets and more)
    MAX_MISORDER = 100  # further back than this is a restarted stream, not a late packet

    def __init__(self, max_frames_waiting: int = 15) -> None:
        self.max_frames_waiting = max_frames_waiting  # ~0.5 s at 30 fps: time for a retransmission
        self.frames_lost = 0
        self._frames_waiting = 0  # complete frames held behind a hole
        self._slots: list[_Packet | None] = [None] * self.CAPACITY
        self._origin: int | None = None  # sequence number of the next packet to release
        self._skip_timestamp: int | None = None  # resynchronising: drop the rest of this frame

    def add(self, sequence_number: int, timestamp: int, marker: bool, payload: bytes) -> list[Frame] | None:
        """Store one packet; return the frames it completed, oldest first, or None."""
        origin = self._origin
        if origin is None:
            if timestamp == self._skip_timestamp:
                return None
            self._skip_timestamp = None
            origin = self._origin = sequence_number
        ahead = (sequence_number - origin) & 0xFFFF
        if ahead >= 0x8000:  # behind the origin: released already, or the stream jumped back
            if 0x10000 - ahead > self.MAX_MISORDER:
                self._give_up(timestamp)
            return None
        if ahead >= self.MAX_SPAN:
            self._give_up(timestamp)
            return None
        self._slots[sequence_number & self.MASK] = (timestamp, marker, payload)
        frames = self._release()
        if frames is not None:
            self._frames_waiting = 0
        elif marker and ahead:  # a complete frame, held behind a hole
            self._frames_waiting += 1
            if self._frames_waiting > self.max_frames_waiting:  # the retransmission is not coming
                self._give_up(timestamp)
        return frames

    def add_vp8(self, sequence_number: int, timestamp: int, marker: bool, payload: bytes) -> list[Frame] | None:
        """`add` for an RTP payload that still starts with its VP8 descriptor; a malformed one is
        ignored (None, nothing stored)."""
        try:
            data = vp8_frame_slice(payload) if payload else b""
        except (ValueError, IndexError):
            return None
        return self.add(sequence_number, timestamp, marker, data)

    def _release(self) -> list[Frame] | None:
        slots, mask = self._slots, self.MASK
        origin = self._origin
        assert origin is not None
        frames: list[Frame] | None = None
        while True:
            first = slots[origin & mask]
            if first is None:
                return frames
            frame_timestamp = first[0]
            parts: list[bytes] = []
            count = 0
            while True:
                packet = slots[(origin + count) & mask]
                if packet is None:
                    return frames  # incomplete: wait for the rest (or its retransmission)
                if packet[0] != frame_timestamp:
                    break  # the next frame has begun: this one is whole without a marker
                parts.append(packet[2])
                count += 1
                if packet[1]:
                    break
            for k in range(count):
                slots[(origin + k) & mask] = None
            origin = self._origin = (origin + count) & 0xFFFF
            frame = (frame_timestamp, parts[0] if count == 1 else b"".join(parts))
            if frames is None:
                frames = [frame]
            else:
                frames.append(frame)

    def _give_up(self, timestamp: int) -> None:
        """Drop everything held (at least one frame is incomplete) and restart at the first packet
        of a frame newer than the one `timestamp` belongs to."""
        self.frames_lost += max(1, len({p[0] for p in self._slots if p is not None}))
        self._slots = [None] * self.CAPACITY
        self._origin = None
        self._frames_waiting = 0
        self._skip_timestamp = timestamp
