"""Short-lived TURN credentials in the TURN REST API scheme (coturn's `use-auth-secret`).

A relay open to anyone is an open proxy, and a long-lived password handed to a browser leaks. The
control API and the relay therefore share one secret and never talk: the API mints, per
participant, a username `<expiry unix time>:<participant id>` and the credential
base64(HMAC-SHA1(secret, username)); the relay recomputes the HMAC and refuses a username whose
expiry has passed. A credential therefore names who it was given to (the relay's log says whose
allocation it is) and dies with the participant's join window (S1): the scheduled end (S2) plus
a small margin, so a participant who rejoins near the end (S5) still gets a relay.

Pure: the caller passes the secret, the participant and the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TurnCredential:
    username: str
    credential: str
    expires_at: datetime


def turn_username(expires_at: datetime, participant_id: str) -> str:
    """`<expiry>:<participant>`: coturn reads the expiry from before the first colon."""
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    if not participant_id or ":" in participant_id:
        raise ValueError("a participant id is non-empty and has no ':'")
    return f"{int(expires_at.timestamp())}:{participant_id}"


def turn_password(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), the credential coturn recomputes."""
    if not secret:
        raise ValueError("the TURN shared secret is empty")
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mint(secret: str, participant_id: str, expires_at: datetime) -> TurnCredential:
    """A credential for `participant_id`, accepted by the relay until `expires_at` (whole seconds)."""
    username = turn_username(expires_at, participant_id)
    return TurnCredential(username=username, credential=turn_password(secret, username),
                          expires_at=datetime.fromtimestamp(int(expires_at.timestamp()), tz=expires_at.tzinfo))


def accepts(secret: str, username: str, credential: str, now: datetime) -> bool:
    """What the relay decides: the HMAC matches and the expiry in the username is not past."""
    expiry, sep, _ = username.partition(":")
    if not sep or not expiry.isdigit() or int(expiry) < now.timestamp():
        return False
    return hmac.compare_digest(turn_password(secret, username), credential)
