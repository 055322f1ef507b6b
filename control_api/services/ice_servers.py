"""The ICE servers a participant's browser is given: the configured static ones (STUN) and the
TURN relay with a credential minted for that participant (control_api/domain/turn_credentials.py).

Every place that hands out a join token (a participant's join, an officer's monitor grant, the
device check) calls `ice_servers_for`, so they all offer the same relay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from control_api.domain.turn_credentials import mint
from openvisit.settings import IceServer, Settings


def ice_servers_for(settings: Settings, *, participant_id: str, valid_until: datetime,
                    now: datetime) -> list[IceServer]:
    """Static servers, then the TURN URLs with a credential for `participant_id` that lasts until
    `valid_until` (the end of the join window, S1/S2) plus the configured margin.

    `now` is the control plane's clock; the relay checks expiry against its own wall clock, so the
    time left in the window is carried over to the wall clock (they differ only when the test or
    demo clock has been moved)."""
    servers = [server.model_copy() for server in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret:
        left = max(valid_until - now, timedelta(0))
        expires = datetime.now(UTC) + left + timedelta(seconds=settings.turn_credential_margin_seconds)
        credential = mint(settings.turn_secret, participant_id, expires)
        servers.append(IceServer(urls=list(settings.turn_urls), username=credential.username,
                                 credential=credential.credential))
    return servers
