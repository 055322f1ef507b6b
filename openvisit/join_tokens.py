"""Join tokens: short-lived, bound to one visit, one participant and its window (rule S1).

The control plane signs them with an Ed25519 private key; media nodes hold only the public key,
so they can verify a token but never mint one. This module depends on nothing but PyJWT so the
signaling service can import the verifier without the control plane.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
AUDIENCE = "openvisit-media"
ISSUER = "openvisit-control"


@dataclass(frozen=True)
class JoinClaims:
    visit_id: str
    participant_id: str  # user id, or resident id for the kiosk side
    participant_role: str  # visitor | attorney | resident
    visit_type: str  # social | privileged
    visit_starts_at: datetime
    visit_ends_at: datetime
    not_before: datetime
    expires_at: datetime
    token_id: str


class JoinTokenError(Exception):
    pass


class JoinTokenSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def signing_key(self) -> Ed25519PrivateKey:
        """The server's key, also used for attestations and manifests (openvisit/signed_documents.py)."""
        return self._key

    def issue(self, *, visit_id: str, participant_id: str, participant_role: str, visit_type: str,
              visit_starts_at: datetime, visit_ends_at: datetime, not_before: datetime,
              expires_at: datetime) -> tuple[str, JoinClaims]:
        claims = JoinClaims(visit_id=visit_id, participant_id=participant_id,
                            participant_role=participant_role, visit_type=visit_type,
                            visit_starts_at=visit_starts_at, visit_ends_at=visit_ends_at,
                            not_before=not_before, expires_at=expires_at, token_id=secrets.token_hex(12))
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": participant_id,
            "visit": visit_id,
            "prole": participant_role,
            "vtype": visit_type,
            "vstart": int(visit_starts_at.timestamp()),
            "vend": int(visit_ends_at.timestamp()),
            "nbf": int(not_before.timestamp()),
            "exp": int(expires_at.timestamp()),
            "jti": claims.token_id,
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM), claims


class JoinTokenVerifier:
    """Verify with the public key only. `now` comes from the caller's clock (test clock aware)."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The same key verifies device-check tokens (openvisit/device_check_tokens.py)."""
        return self._key

    def verify(self, token: str, now: datetime, *, visit_id: str | None = None) -> JoinClaims:
        try:
            p = jwt.decode(token, self._key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=ISSUER,
                           options={"verify_exp": False, "verify_nbf": False,
                                    "require": ["sub", "visit", "prole", "nbf", "exp", "jti"]})
        except jwt.PyJWTError as exc:
            raise JoinTokenError(f"invalid join token: {exc}") from exc
        ts = now.timestamp()
        if ts < p["nbf"]:
            raise JoinTokenError("join token not valid yet: the visit's lobby has not opened")
        if ts >= p["exp"]:
            raise JoinTokenError("join token expired")
        if visit_id is not None and p["visit"] != visit_id:
            raise JoinTokenError("join token is for another visit")

        def at(v: int) -> datetime:
            return datetime.fromtimestamp(v, UTC)

        return JoinClaims(visit_id=p["visit"], participant_id=p["sub"], participant_role=p["prole"],
                          visit_type=p["vtype"], visit_starts_at=at(p["vstart"]), visit_ends_at=at(p["vend"]),
                          not_before=at(p["nbf"]), expires_at=at(p["exp"]), token_id=p["jti"])
