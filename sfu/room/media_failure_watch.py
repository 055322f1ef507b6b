"""MediaFailureWatch: our side failed (M6), so the visit ends `failed` and is credited.

Both parties' connections are up (ICE and DTLS) after the start, yet no frame reached either of
them within `timeout`: something between them is broken on our side. At the scheduled end, the
same holds if both were ever connected at the same time and no frame ever reached a party. On a
clock passed in (the room's loop clock); what "a frame reached a party" means is the room's to
say (`frames_reached_peer`), read only until it first says yes.
"""

from __future__ import annotations

from collections.abc import Callable

DEFAULT_MEDIA_TIMEOUT = 30.0  # both connected after the start, and no frame forwarded for this long: failed


class MediaFailureWatch:
    def __init__(self, frames_reached_peer: Callable[[], bool], clock: Callable[[], float], *,
                 timeout: float = DEFAULT_MEDIA_TIMEOUT) -> None:
        self.timeout = timeout
        self._frames_reached_peer = frames_reached_peer
        self._clock = clock
        self._both_since: float | None = None  # both connections up since
        self.both_ever = False  # both were up at the same time at some point
        self.media_flowed = False  # a frame reached the other party (latched)
        self._silent_since: float | None = None

    def connections(self, both_connected: bool) -> None:
        """Whether both parties' connections are up, now."""
        if both_connected and self._both_since is None:
            self._both_since = self._clock()
            self.both_ever = True
        elif not both_connected and self._both_since is not None:
            self._both_since = None

    def flowed(self) -> bool:
        if not self.media_flowed:
            self.media_flowed = self._frames_reached_peer()
        return self.media_flowed

    def never_flowed(self, started: Callable[[], bool]) -> bool:
        """Read every tick: True once both have been connected after the start for `timeout`
        without a frame reaching either (`started` is read only while both are connected)."""
        if self._both_since is None or not started() or self.flowed():
            self._silent_since = None
            return False
        if self._silent_since is None:
            self._silent_since = self._clock()
        return self._clock() - self._silent_since >= self.timeout

    def stop(self) -> None:
        """The room is ending: the connections going down from now on are not a failure."""
        self._both_since = None

    def failed_at_end(self) -> bool:
        """At the scheduled end: both were connected at some point and no frame ever flowed."""
        return self.both_ever and not self.flowed()
