"""A visit's live session on this SFU: the `Room` and its named parts, one module each.

- `room`: `Room`, the coordinator (joining, monitors, leaving, ending).
- `participant_connection`: one party's peer connection and what the room knows of it.
- `ice_candidates`: trickle ICE, checked. `visit_schedule`: S1-S3 on an injected clock.
- `presence`: connected time and stalled parties. `media_failure_watch`: M6.
- `visit_recording`: R1, R2 (P1, P2). `room_totals`: the counts of parties that left.
"""

from sfu.room.ice_candidates import add_ice_candidate
from sfu.room.media_failure_watch import DEFAULT_MEDIA_TIMEOUT
from sfu.room.participant_connection import Hangup, ParticipantConnection, Send, Side, side_of
from sfu.room.presence import DEFAULT_STALL_SECONDS
from sfu.room.room import DisconnectReason, Room, RoomClosedError
from sfu.room.room_totals import RoomTotals
from sfu.room.visit_schedule import DEFAULT_WARNINGS

__all__ = ["DEFAULT_MEDIA_TIMEOUT", "DEFAULT_STALL_SECONDS", "DEFAULT_WARNINGS", "DisconnectReason", "Hangup",
           "ParticipantConnection", "Room", "RoomClosedError", "RoomTotals", "Send", "Side", "add_ice_candidate",
           "side_of"]
