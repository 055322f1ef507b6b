"""Who is asking: passwords (argon2), access tokens (PyJWT, HS256) and the Principal.

Join tokens for the media plane are different (Ed25519, verify-only on media nodes): see
`openvisit.join_tokens`.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError


class Role(StrEnum):
    VISITOR = "visitor"
    ATTORNEY = "attorney"
    ADMIN = "admin"
    OFFICER = "officer"
    INVESTIGATOR = "investigator"
    OPERATOR = "operator"
    KIOSK = "kiosk"
    MEDIA = "media"


STAFF_ROLES = frozenset({Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR})
# Who must use two-step sign-in (staff_second_factor): staff, who watch visits and export recordings,
# and operators, who hold every facility's money and audit trail.
SECOND_FACTOR_ROLES = frozenset({*STAFF_ROLES, Role.OPERATOR})
VISITOR_ROLES = frozenset({Role.VISITOR, Role.ATTORNEY})
USER_ROLES = frozenset({*VISITOR_ROLES, *STAFF_ROLES, Role.OPERATOR})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. Staff and kiosks carry their facility (V3)."""

    id: str
    role: Role
    facility_id: str | None = None
    housing_unit_id: str | None = None  # kiosks only
    session_id: str | None = None  # the sign-in (auth_sessions row) the token belongs to; checked per request
    enrolling: bool = False  # staff who must set up their second factor before anything else

    @property
    def key(self) -> str:
        return f"{self.role.value}:{self.id}"


_hasher = PasswordHasher()  # argon2id with the library's recommended parameters


def use_password_hasher(hasher: PasswordHasher) -> None:
    """Swap the hasher's cost parameters (the test suite uses a cheap one to stay fast)."""
    global _hasher
    _hasher = hasher


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the account does not exist, so timing does not reveal it.
_DUMMY_HASH: str | None = None


def verify_password_or_dummy(password_hash: str | None, password: str) -> bool:
    global _DUMMY_HASH
    if password_hash is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hash_password(secrets.token_hex(8))
        verify_password(_DUMMY_HASH, password)
        return False
    return verify_password(password_hash, password)


class TokenError(Exception):
    pass


class AccessTokens:
    """Issue and verify short-lived bearer tokens for users and kiosks."""

    algorithm = "HS256"
    audience = "openvisit-api"

    def __init__(self, secret: str, ttl: timedelta) -> None:
        self._secret = secret
        self.ttl = ttl

    def derived_secret(self, purpose: str) -> str:
        """A separate key per purpose (e.g. recording playback links), so no token passes for another kind."""
        return hashlib.sha256(f"{purpose}:{self._secret}".encode()).hexdigest()

    def issue(self, principal: Principal, now: datetime, *, not_after: datetime | None = None
              ) -> tuple[str, datetime]:
        """A token for `principal`, valid for the configured time (or until `not_after`, the end of
        its session, if that comes first)."""
        expires = now + self.ttl if not_after is None else min(now + self.ttl, not_after)
        claims = {
            "sub": principal.id,
            "role": principal.role.value,
            "fac": principal.facility_id,
            "hu": principal.housing_unit_id,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": secrets.token_hex(8),
        }
        if principal.session_id is not None:
            claims["sid"] = principal.session_id
        if principal.enrolling:
            claims["enrol"] = True
        return jwt.encode(claims, self._secret, algorithm=self.algorithm), expires

    def verify(self, token: str, now: datetime) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],
                audience=self.audience,
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                         "require": ["sub", "role", "exp"]},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid access token: {exc}") from exc
        # Expiry is checked against our clock, which the test clock may have moved.
        if int(claims["exp"]) <= now.timestamp():
            raise TokenError("access token expired")
        try:
            role = Role(claims["role"])
        except ValueError as exc:
            raise TokenError("invalid access token: unknown role") from exc
        if role is Role.MEDIA:
            raise TokenError("invalid access token: media nodes use their own credential")
        sid = claims.get("sid")
        return Principal(id=str(claims["sub"]), role=role, facility_id=claims.get("fac"),
                         housing_unit_id=claims.get("hu"), session_id=str(sid) if sid is not None else None,
                         enrolling=bool(claims.get("enrol", False)))
