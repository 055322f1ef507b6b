"""Device-check tokens: short-lived, for one person's connection test, naming no visit (issue 13).

A distinct kind of join token: signed with the same Ed25519 key as visit join tokens (so any
media node that verifies visit tokens verifies these), but for another audience and without a
`visit` claim. The visit verifier (`openvisit.join_tokens`) refuses them for their audience and
missing visit; this verifier refuses visit tokens for theirs. A check token therefore never
opens a visit's room, and a visit token never opens a check. Depends on PyJWT only, like the
visit tokens, so the signaling service imports it without the control plane.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from openvisit.join_tokens import ALGORITHM, ISSUER

AUDIENCE = "openvisit-device-check"
KIND = "device-check"
MAX_SECONDS = 120  # no check lasts longer, whatever a token says


@dataclass(frozen=True)
class DeviceCheckClaims:
    account_id: str  # the user's or the kiosk's id
    account_role: str  # visitor | attorney | kiosk | staff roles
    max_seconds: int
    not_before: datetime
    expires_at: datetime  # connect before this; the check itself then runs up to max_seconds
    token_id: str

    @property
    def account(self) -> str:
        """One key per account (a kiosk and a user never share one): one open check each."""
        return f"{self.account_role}:{self.account_id}"


class DeviceCheckTokenError(Exception):
    pass


class DeviceCheckTokenSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    def issue(self, *, account_id: str, account_role: str, max_seconds: int, not_before: datetime,
              expires_at: datetime) -> tuple[str, DeviceCheckClaims]:
        claims = DeviceCheckClaims(account_id=account_id, account_role=account_role, max_seconds=max_seconds,
                                   not_before=not_before, expires_at=expires_at, token_id=secrets.token_hex(12))
        payload = {"iss": ISSUER, "aud": AUDIENCE, "kind": KIND, "sub": account_id, "role": account_role,
                   "secs": max_seconds, "nbf": int(not_before.timestamp()), "exp": int(expires_at.timestamp()),
                   "jti": claims.token_id}
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims


class DeviceCheckTokenVerifier:
    """Verify with the public key only; `now` is the caller's clock (test clock aware)."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    def verify(self, token: str, now: datetime) -> DeviceCheckClaims:
        try:
            p = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                           options={"verify_exp": False, "verify_nbf": False,
                                    "require": ["sub", "kind", "role", "secs", "nbf", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            raise DeviceCheckTokenError(f"invalid device-check token: {exc}") from exc
        if p["kind"] != KIND or "visit" in p:
            raise DeviceCheckTokenError("not a device-check token")
        secs = p["secs"]
        if not isinstance(secs, int) or isinstance(secs, bool) or not 1 <= secs <= MAX_SECONDS:
            raise DeviceCheckTokenError("the token's check length is out of range")
        ts = now.timestamp()
        if ts < p["nbf"]:
            raise DeviceCheckTokenError("device-check token not valid yet")
        if ts >= p["exp"]:
            raise DeviceCheckTokenError("device-check token expired: ask for a new one")
        return DeviceCheckClaims(account_id=str(p["sub"]), account_role=str(p["role"]), max_seconds=secs,
                                 not_before=datetime.fromtimestamp(p["nbf"], UTC),
                                 expires_at=datetime.fromtimestamp(p["exp"], UTC), token_id=str(p["jti"]))


def looks_like_device_check(token: str) -> bool:
    """Whether an (unverified) token claims to be a device-check token: for a clearer refusal only."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(payload, dict) and payload.get("kind") == KIND
